-- An agent makes itself ready (seed agent_ready / nway_ready), in one step: its seat idle;
-- its call state ready unless it is on a call (it becomes ready when the call ends); its
-- wrap-up over; and, being free now, it takes the best waiting call of its groups
-- (agent_take_call). A disabled extension changes nothing.
-- KEYS[1] = the agent hash
-- KEYS[2] = waiting hash (call uuid -> JSON of the queued call)
-- KEYS[3] = offers hash (call uuid -> extension reserved for it)
-- KEYS[4] = wrapups zset (extension, score = end of wrap-up in ms)
-- KEYS[5..] = for each of the agent's groups (as the caller read them): its queue zset, then
--             its group hash
-- ARGV[1] = the agent's extension
-- ARGV[2] = now (ms)
-- ARGV[3] = lease margin (ms)
-- ARGV[4] = ring timeout (s) for a group hash without group_callout_timeout
-- ARGV[5] = the agent's groups field as the caller read it (KEYS[5..] are its keys)
-- ARGV[6] = the states a manual ready may leave, comma separated (never ring, talking, ivr:
--           a ready agent on a call would be offered a second one)
-- ARGV[7] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[8] = the agent's status channel (agent_announce: "ready" and the offered call's "ring"
--           are told here, in this step; '' = tell nothing)
-- ARGV[9] = the status message, {{status}} where the state goes
-- Returns {"disabled", state}, {"absent", ""} or {"on_call", state} when the call state did
-- not change (the seat is idle all the same unless disabled or absent); else {"ready",
-- previous state, now, offered call uuid or "", its waiting JSON or "", "1" when the groups
-- changed since the caller read them (nothing offered: dispatch again with the new ones)}.
-- Tells "ready" when the previous state differs, then "ring" when a call was offered.
--#include agent_rules
--#include skills
--#include agent_take_call
--#include agent_request
--#include agent_announce
local req = ARGV[7]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local ext, now = ARGV[1], tonumber(ARGV[2])
  local a = redis.call('HMGET', KEYS[1], 'enabled', 'call_state', 'groups', 'seat_status')
  if a[1] == '0' then
    return {'disabled', a[2] or ''}
  end
  if not a[2] then
    return {'absent', ''}
  end
  redis.call('HSET', KEYS[1], 'seat_status', 'idle')
  local current = a[2]
  local leaves = string.find(',' .. ARGV[6] .. ',', ',' .. current .. ',', 1, true)
  if not leaves or not agent_may_move(current, 'ready') then
    return {'on_call', current}
  end
  if current ~= 'ready' then
    redis.call('HSET', KEYS[1], 'call_state', 'ready', 'last_change', now)
    agent_announce(ARGV[8], ARGV[9], 'ready')
  end
  -- back from a pause (or a login: the seat was busy): idle from now for longest_idle, not
  -- since a call that ended before the pause
  if current == 'busy' or current == 'rest' or current == 'no_ready' or a[4] ~= 'idle' then
    redis.call('HSET', KEYS[1], 'idle_since', now)
  end
  redis.call('HSET', KEYS[1], 'no_answer_count', 0)
  redis.call('ZREM', KEYS[4], ext)
  if (a[3] or '') ~= ARGV[5] then
    return {'ready', current, now, '', '', '1'}
  end
  local taken = agent_take_call(ext, now, tonumber(ARGV[3]), tonumber(ARGV[4]), 5)
  if not taken then
    return {'ready', current, now, '', '', '0'}
  end
  agent_announce(ARGV[8], ARGV[9], 'ring')
  return {'ready', current, now, taken[1], taken[2], '0'}
end

return agent_reply(req, run())
