-- Move an agent's call state, compare-and-set: only where the transition table allows it
-- (agent_rules), narrowed if asked to some current states and to the agent holding the given
-- call's reservation, setting extra fields with it.
-- KEYS[1] = the agent hash
-- ARGV[1] = current states to move from, comma separated ("*" = any the table allows)
-- ARGV[2] = the new call state
-- ARGV[3] = now (ms)
-- ARGV[4] = call uuid the agent must hold ("" = no condition, "-" = it must hold none)
-- ARGV[5] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[6] = the agent's status channel (agent_announce: the new state is told here, in this
--           step, when it differs from the previous one; '' = tell nothing)
-- ARGV[7] = the status message, {{status}} where the state goes
-- ARGV[8..] = field, value pairs to set as well
-- Returns {previous state, 1, the node its phone is registered on ('' none)} when done (a
-- handler that rings the agent needs the node: no round trip of its own), {previous state, 0}
-- when refused ("" when the agent does not exist).
--#include agent_rules
--#include agent_request
--#include agent_announce
local req = ARGV[5]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local current = redis.call('HGET', KEYS[1], 'call_state')
  if not current then
    return {'', 0}
  end
  if not agent_may_move(current, ARGV[2]) then
    return {current, 0}
  end
  if ARGV[1] ~= '*' and not string.find(',' .. ARGV[1] .. ',', ',' .. current .. ',', 1, true) then
    return {current, 0}
  end
  local held = redis.call('HGET', KEYS[1], 'offer_uuid') or ''
  if ARGV[4] == '-' and held ~= '' then
    return {current, 0}
  end
  if ARGV[4] ~= '' and ARGV[4] ~= '-' and held ~= ARGV[4] then
    return {current, 0}
  end
  if current ~= ARGV[2] then
    redis.call('HSET', KEYS[1], 'call_state', ARGV[2], 'last_change', ARGV[3])
  end
  for i = 8, #ARGV - 1, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  if current ~= ARGV[2] then
    agent_announce(ARGV[6], ARGV[7], ARGV[2])
  end
  return {current, 1, redis.call('HGET', KEYS[1], 'reg_node') or ''}
end

return agent_reply(req, run())
