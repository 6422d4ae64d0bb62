-- Queue statistics (issue 18 item 6): a group's service level counts the calls answered
-- before their wait reached this many seconds. 20 s is the usual call-center target; nothing
-- routes differently by it (the statistics read it, the ACD does not).
ALTER TABLE ext_group ADD COLUMN service_level_seconds integer NOT NULL DEFAULT 20;
ALTER TABLE ext_group ADD CONSTRAINT ext_group_service_level_seconds_check
    CHECK (service_level_seconds > 0);
COMMENT ON COLUMN ext_group.service_level_seconds IS
    'service level target: a call answered before waiting this many seconds is within it';
