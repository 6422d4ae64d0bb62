-- An agent became available: reserve it at once for the best waiting call of its groups
-- (agent_take_call: VIP before normal, then the longest waiting, calls it already failed last).
-- KEYS[1] = the agent hash
-- KEYS[2] = waiting hash (call uuid -> JSON of the queued call)
-- KEYS[3] = offers hash (call uuid -> extension reserved for it)
-- KEYS[4..] = for each of the agent's groups: its queue zset, then its group hash (the
--             lease is the longest group_callout_timeout of them plus the margin)
-- ARGV[1] = the agent's extension
-- ARGV[2] = now (ms)
-- ARGV[3] = lease margin (ms)
-- ARGV[4] = ring timeout (s) for a group hash without group_callout_timeout
-- ARGV[5] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[6] = the agent's status channel (agent_<ext>)
-- ARGV[7] = its message with {{status}} where the state goes (agent_announce: the ring is told
--           here, in this step; '' = told by nobody)
-- Returns {call uuid, waiting JSON, now} for the call now offered this agent (it rings since
-- now), or false when the agent is not available or nobody waits for it.
--#include agent_rules
--#include skills
--#include agent_take_call
--#include agent_request
--#include agent_announce
local req = ARGV[5]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local now = tonumber(ARGV[2])
  local taken = agent_take_call(ARGV[1], now, tonumber(ARGV[3]), tonumber(ARGV[4]), 4)
  if not taken then
    return false
  end
  agent_announce(ARGV[6], ARGV[7], 'ring')
  return {taken[1], taken[2], now}
end

return agent_reply(req, run())
