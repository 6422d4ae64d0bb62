-- End an agent's wrap-up (typing) when it is due; safe when several nodes try at once: only
-- the one that removes the timer entry acts.
-- KEYS[1] = the agent hash
-- KEYS[2] = wrapups zset (extension, score = end of wrap-up in ms)
-- ARGV[1] = the agent's extension
-- ARGV[2] = now (ms)
-- ARGV[3] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[4] = the agent's status channel (agent_announce: its "ready" is told here, in this
--           step; '' = tell nothing)
-- ARGV[5] = the status message, {{status}} where the state goes
-- Returns 1 when the agent went from typing to ready (since now: told), 0 otherwise.
--#include agent_rules
--#include agent_request
--#include agent_announce
local req = ARGV[3]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not due or tonumber(due) > tonumber(ARGV[2]) then
    return 0
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  local current = redis.call('HGET', KEYS[1], 'call_state')
  if current ~= 'typing' or not agent_may_move(current, 'ready') then
    return 0
  end
  redis.call('HSET', KEYS[1], 'call_state', 'ready', 'last_change', ARGV[2])
  agent_announce(ARGV[4], ARGV[5], 'ready')
  return 1
end

return agent_reply(req, run())
