-- A transferred caller stays in its call's one CDR: the parties it reached after the transfer
-- (the dialplan it was sent to, a consultation's party, a second queue) are attempt rows of
-- that CDR with transferred = true, after the attempts of the app that took the call.
ALTER TABLE cdr_agent_attempt ADD COLUMN transferred boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN cdr_agent_attempt.transferred IS
    'a party the caller reached after its call was transferred (not offered by the queue)';
