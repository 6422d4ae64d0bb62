-- Callback instead of waiting (issue 18 item 5): a waiting caller who presses the group's
-- exit key with exit_to 'callback' keeps its place in the queue and hangs up; when its turn
-- comes an agent is reserved and rung first, then the caller is called back through the
-- group's gateway. Every column's default keeps today's behaviour: no gateway, so no
-- callback can be asked for.
ALTER TABLE ext_group ADD COLUMN callback_gateway character varying(64) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD COLUMN callback_max_attempts integer NOT NULL DEFAULT 3;
ALTER TABLE ext_group ADD COLUMN callback_retry_seconds integer NOT NULL DEFAULT 60;
ALTER TABLE ext_group ADD COLUMN callback_confirm character varying(200) NOT NULL DEFAULT '';
ALTER TABLE ext_group ADD CONSTRAINT ext_group_callback_gateway_check
    CHECK (callback_gateway ~ '^[A-Za-z0-9_.-]*$');
ALTER TABLE ext_group ADD CONSTRAINT ext_group_callback_max_attempts_check
    CHECK (callback_max_attempts BETWEEN 1 AND 20);
ALTER TABLE ext_group ADD CONSTRAINT ext_group_callback_retry_seconds_check
    CHECK (callback_retry_seconds BETWEEN 0 AND 86400);
COMMENT ON COLUMN ext_group.callback_gateway IS
    'the gateway a callback calls the caller back through (sofia/gateway/<gw>/<number>); '
    'empty = no callbacks';
COMMENT ON COLUMN ext_group.callback_max_attempts IS
    'times the caller is called back (not answered, busy) before the callback is dropped';
COMMENT ON COLUMN ext_group.callback_retry_seconds IS
    'seconds between a callback the caller did not answer and its next attempt';
COMMENT ON COLUMN ext_group.callback_confirm IS
    'what the caller hears once its callback is queued: a playback file, or empty for the '
    'English default spoken by mod_flite';
