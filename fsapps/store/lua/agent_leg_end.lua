-- The switch told the end of an agent's leg (its CHANNEL_HANGUP_COMPLETE reached the runtime,
-- or the reconciler found it gone): if the agent was waiting for that leg's end, it no longer
-- is (agent_free lets a ready agent take calls again), and, free now, it takes the best
-- waiting call of its groups in the same step (agent_take_call) - when its groups are still
-- the ones the caller named the keys of. A later leg of the agent is left alone.
-- KEYS[1] = the agent hash
-- KEYS[2] = waiting hash (call uuid -> JSON of the queued call)
-- KEYS[3] = offers hash (call uuid -> extension reserved for it)
-- KEYS[4..] = for each of the agent's groups (as the caller last saw them): its queue zset,
--             then its group hash
-- ARGV[1] = the leg's uuid
-- ARGV[2] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[3] = the agent's extension
-- ARGV[4] = the agent's groups field as the caller last saw it (KEYS[4..] are its keys); "-" =
--           offer nothing here (the caller offers the agent a call itself)
-- ARGV[5] = now (ms)
-- ARGV[6] = lease margin (ms)
-- ARGV[7] = ring timeout (s) for a group hash without group_callout_timeout
-- ARGV[8] = the agent's status channel (agent_announce: an offered call's "ring" is told here,
--           in this step; '' = tell nothing)
-- ARGV[9] = the status message, {{status}} where the state goes
-- Returns 0 when that leg was not the one the agent waited for; else {1, the agent's groups
-- field, "1" when the groups were as the caller saw them (the offer was made here, or
-- nobody waited) or "0" (offer nothing was tried: the caller offers from the groups
-- answered), the offered call's uuid or "", its waiting JSON or "", now}.
--#include agent_rules
--#include skills
--#include agent_take_call
--#include agent_request
--#include agent_announce
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
  local groups = redis.call('HGET', KEYS[1], 'groups') or ''
  local now = tonumber(ARGV[5])
  if groups ~= ARGV[4] then
    return {1, groups, '0', '', '', now}
  end
  local taken = agent_take_call(ARGV[3], now, tonumber(ARGV[6]), tonumber(ARGV[7]), 4)
  if not taken then
    return {1, groups, '1', '', '', now}
  end
  agent_announce(ARGV[8], ARGV[9], 'ring')
  return {1, groups, '1', taken[1], taken[2], now}
end

return agent_reply(req, run())
