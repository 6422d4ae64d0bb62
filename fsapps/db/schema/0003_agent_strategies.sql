-- Routing strategies beside the call modes, and agent tiers (issue 18 item 1).
-- agent_strategy '' keeps the call mode's order (today's behaviour); tier levels default to 1
-- (every agent on one level: tiers change nothing until a level is set).
ALTER TABLE ext_group ADD COLUMN agent_strategy character varying(20) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD COLUMN tier_wait_seconds integer;
ALTER TABLE ext_group ADD CONSTRAINT ext_group_agent_strategy_check CHECK (agent_strategy IN
    ('', 'longest_idle', 'fewest_calls', 'least_talk_time', 'ring_all'));
ALTER TABLE ext_group ADD CONSTRAINT ext_group_tier_wait_seconds_check
    CHECK (tier_wait_seconds >= 0);
COMMENT ON COLUMN ext_group.agent_strategy IS
    'which free agent gets a call: empty = the call mode''s order; longest_idle, fewest_calls '
    '(today), least_talk_time (today), ring_all (every free member at once, first answer wins)';
COMMENT ON COLUMN ext_group.tier_wait_seconds IS
    'tiers: NULL/0 = a level-2 agent is rung as soon as no level-1 agent is free; N = a caller '
    'waits N s for a lower level (level L after (L-1)*N s) unless no lower-level agent is '
    'logged in with its seat idle';

-- An agent's tier in a group. Kept apart from ext_group_map, whose rows are the agent's login
-- (deleted at logout): a level is the supervisor's setting and outlives logins.
CREATE TABLE ext_group_level (
    group_number character varying(50) NOT NULL
        REFERENCES ext_group (group_number) ON DELETE CASCADE,
    ext character varying(50) NOT NULL,
    level integer NOT NULL DEFAULT 1 CHECK (level BETWEEN 1 AND 9),
    PRIMARY KEY (group_number, ext)
);
COMMENT ON TABLE ext_group_level IS
    'an agent''s tier in a group: level 1 is rung first; absent = level 1';
