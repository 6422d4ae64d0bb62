-- Waiting callers (issue 18 items 3 and 4): announcements of the caller's place and estimated
-- wait, and leaving the queue on the caller's terms (max wait, an exit key). Every column's
-- default keeps today's behaviour: no announcement, no max wait beyond the long-wait policy
-- (busy_ring_repeats), no exit key.
ALTER TABLE ext_group ADD COLUMN announce_seconds integer NOT NULL DEFAULT 0;
ALTER TABLE ext_group ADD COLUMN announce character varying(1000) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD COLUMN max_wait_seconds integer NOT NULL DEFAULT 0;
ALTER TABLE ext_group ADD COLUMN overflow_to character varying(200) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD COLUMN exit_key character varying(1) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD COLUMN exit_to character varying(200) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD CONSTRAINT ext_group_announce_seconds_check
    CHECK (announce_seconds >= 0);
ALTER TABLE ext_group ADD CONSTRAINT ext_group_max_wait_seconds_check
    CHECK (max_wait_seconds >= 0);
ALTER TABLE ext_group ADD CONSTRAINT ext_group_exit_key_check
    CHECK (exit_key IN ('', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#'));
COMMENT ON COLUMN ext_group.announce_seconds IS
    'a waiting caller hears its place in the queue and the estimated wait every N s (0 = never)';
COMMENT ON COLUMN ext_group.announce IS
    'the announcement: sentences separated by ";;" of steps separated by ";", each '
    '"playback <file>", "say <say args>" or '
    '"speak <engine>|<voice>|<text>", with {position}, {minutes}, {seconds}; empty = the '
    'English default spoken by mod_flite (docs/acd.md)';
COMMENT ON COLUMN ext_group.max_wait_seconds IS
    'a caller waiting this long leaves the queue to overflow_to (0 = no limit); with a limit, '
    'a caller of a group nobody is logged into leaves at once';
COMMENT ON COLUMN ext_group.overflow_to IS
    'where a caller goes past max_wait_seconds or the busy_ring_repeats: hangup (empty), '
    'group:<g>, extension:<ext>, dialplan:<destination>[,<dialplan>[,<context>]]';
COMMENT ON COLUMN ext_group.exit_key IS
    'the key a waiting caller presses to leave the queue to exit_to (empty = none)';
COMMENT ON COLUMN ext_group.exit_to IS 'where the exit key takes the caller (as overflow_to)';
