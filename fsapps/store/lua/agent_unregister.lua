-- A phone unregistered (or its registration expired) on a node: the agent becomes unreg,
-- unless it is registered on another node now (a late unregister must not undo that).
-- KEYS[1] = the agent hash
-- ARGV[1] = the node that saw the unregister
-- ARGV[2] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- Returns 1 when the agent went unreg, 0 when nothing changed.
--#include agent_request
local req = ARGV[2]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local a = redis.call('HMGET', KEYS[1], 'reg_state', 'reg_node')
  if a[1] ~= 'reged' then
    return 0
  end
  if a[2] and a[2] ~= '' and a[2] ~= ARGV[1] then
    return 0
  end
  redis.call('HSET', KEYS[1], 'reg_state', 'unreg', 'reg_node', '', 'reg_host', '')
  redis.call('HDEL', KEYS[1], 'reg_until', 'reg_stamp')
  return 1
end

return agent_reply(req, run())
