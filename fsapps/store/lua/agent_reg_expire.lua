-- The registration a dead node recorded ran out: the agent becomes unreg, but only if that
-- node still holds the agent's latest registration and its expiry has passed (a phone that
-- registered again, here or on another node, moved reg_node / reg_until on first).
-- KEYS[1] = the agent hash
-- ARGV[1] = the dead node
-- ARGV[2] = now (ms)
-- ARGV[3] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- Returns {1, reg_stamp} when the agent went unreg (reg_stamp: the Event-Date-Timestamp of
-- the register event it had, so the caller clears that registration's live state and no
-- newer one), 0 when nothing changed.
--#include agent_request
local req = ARGV[3]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local a = redis.call('HMGET', KEYS[1], 'reg_state', 'reg_node', 'reg_until', 'reg_stamp')
  if a[1] ~= 'reged' or a[2] ~= ARGV[1] then
    return 0
  end
  local expiry = tonumber(a[3] or '')
  -- No recorded expiry (registered before fsapps kept one): nothing says it ran out.
  if not expiry or expiry <= 0 or expiry > tonumber(ARGV[2]) then
    return 0
  end
  redis.call('HSET', KEYS[1], 'reg_state', 'unreg', 'reg_node', '', 'reg_host', '')
  redis.call('HDEL', KEYS[1], 'reg_until', 'reg_stamp')
  return {1, a[4] or ''}
end

return agent_reply(req, run())
