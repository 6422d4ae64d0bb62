-- The switch told the end of an agent's leg (its CHANNEL_HANGUP_COMPLETE reached the runtime,
-- or the reconciler found it gone): if the agent was waiting for that leg's end, it no longer
-- is (agent_free lets a ready agent take calls again). A later leg of the agent is left alone.
-- KEYS[1] = the agent hash
-- ARGV[1] = the leg's uuid
-- Returns 1 when that leg was the one the agent waited for, 0 otherwise.
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'leg_pending') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'leg_pending', '')
return 1
