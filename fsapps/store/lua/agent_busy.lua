-- An agent makes itself busy (seed agent_busy / nway_busy), in one step: its seat busy (no
-- queue calls), and its call state busy where the transition table allows it (not while it
-- talks: the seat alone says so then).
-- KEYS[1] = the agent hash
-- ARGV[1] = now (ms)
-- ARGV[2] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[3] = the agent's status channel (agent_announce: the move to busy is told here, in
--           its own step; '' = tell nothing)
-- ARGV[4] = the status message, {{status}} where the state goes
-- Returns {previous call state, 1, now} when the call state is busy now (told busy if the
-- previous one differs), {previous call state, 0, now} when only the seat changed, or
-- {"", 0, now} when there is no agent (nothing changes).
--#include agent_rules
--#include agent_request
--#include agent_announce
local req = ARGV[2]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local current = redis.call('HGET', KEYS[1], 'call_state')
  if not current then
    return {'', 0, ARGV[1]}
  end
  redis.call('HSET', KEYS[1], 'seat_status', 'busy')
  if not agent_may_move(current, 'busy') then
    return {current, 0, ARGV[1]}
  end
  if current ~= 'busy' then
    redis.call('HSET', KEYS[1], 'call_state', 'busy', 'last_change', ARGV[1])
    agent_announce(ARGV[3], ARGV[4], 'busy')
  end
  return {current, 1, ARGV[1]}
end

return agent_reply(req, run())
