-- The switch told the end of an agent's leg (its CHANNEL_HANGUP_COMPLETE reached the runtime,
-- or the reconciler found it gone): if the agent was waiting for that leg's end, it no longer
-- is (agent_free lets a ready agent take calls again). A later leg of the agent is left alone.
-- KEYS[1] = the agent hash
-- ARGV[1] = the leg's uuid
-- ARGV[2] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- Returns {1, the agent's groups (its groups field: comma separated)} when that leg was the one
-- the agent waited for - the groups to offer it a waiting call from, in the same round trip -
-- and 0 otherwise.
--#include agent_request
local req = ARGV[2]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'leg_pending') ~= ARGV[1] then
    return 0
  end
  redis.call('HSET', KEYS[1], 'leg_pending', '')
  return {1, redis.call('HGET', KEYS[1], 'groups') or ''}
end

return agent_reply(req, run())
