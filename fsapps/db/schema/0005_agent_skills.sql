-- Skills-based routing (issue 18 item 2): an agent's skills with levels, and per group how
-- long a caller waits before its required skills relax one step. No skills on an agent or a
-- call and no relax setting route as before.
CREATE TABLE ext_skill (
    domain character varying(100) NOT NULL DEFAULT 'default'::character varying,
    ext character varying(50) NOT NULL,
    skill character varying(32) NOT NULL CHECK (skill ~ '^[a-z0-9_.-]{1,32}$'),
    level integer NOT NULL CHECK (level BETWEEN 1 AND 9),
    PRIMARY KEY (domain, ext, skill)
);
COMMENT ON TABLE ext_skill IS
    'an agent''s skills: a call requiring skill S at level L goes to agents with S at L or more';

ALTER TABLE ext_group ADD COLUMN skill_relax_seconds integer;
ALTER TABLE ext_group ADD CONSTRAINT ext_group_skill_relax_seconds_check
    CHECK (skill_relax_seconds >= 0);
COMMENT ON COLUMN ext_group.skill_relax_seconds IS
    'skills: NULL/0 = a call''s required skills never relax; N = every N s of waiting they relax '
    'one step (every required level one lower, down to 1; then the last-named skill dropped)';
