-- The agent's call ended: wrap-up (typing) until a time, or ready at once when there is no
-- wrap-up - only while the agent still holds this call (the reconciler may have freed it,
-- and it may ring for another call by now). The call's entry in the offers hash goes either
-- way: nothing reads its offer any more (removed before the agent turns free, so the offers
-- hash never shows the agent reserved for two calls).
-- KEYS[1] = the agent hash
-- KEYS[2] = offers hash (call uuid -> extension reserved for it)
-- KEYS[3] = wrapups zset (extension, score = end of wrap-up in ms)
-- ARGV[1] = call uuid
-- ARGV[2] = now (ms)
-- ARGV[3] = end of the wrap-up (ms); 0 = none: ready at once
-- ARGV[4] = the agent's extension
-- ARGV[5] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[6] = today (the node's local date, YYYYMMDD): the day the agent's daily counters
--           (calls_today, talk_ms_today, kept for the strategies) count; another day's start
--           again from 0. A call that was talking counts, its talk time from last_change (when
--           it turned talking) to now; idle_since (longest_idle) is now.
-- ARGV[7] = the agent's status channel (agent_<ext>)
-- ARGV[8] = its message with {{status}} where the state goes (agent_announce: the new state
--           is told here, in this step, when it differs; '' = told by nobody)
-- Returns {previous call state, new call state, now} when done, or false when the agent no longer holds this call or the table forbids the move.
--#include agent_rules
--#include agent_request
--#include agent_announce
local req = ARGV[5]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local uuid, now, until_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
  redis.call('HDEL', KEYS[2], uuid)
  local a = redis.call('HMGET', KEYS[1], 'call_state', 'offer_uuid', 'last_change', 'stats_day')
  local current = a[1]
  local wanted = 'ready'
  if until_ms > 0 then
    wanted = 'typing'
  end
  if not current or a[2] ~= uuid or not agent_may_move(current, wanted) then
    return false
  end
  local today = ARGV[6] or ''
  if today ~= '' then
    if a[4] ~= today then
      redis.call('HSET', KEYS[1], 'stats_day', today, 'calls_today', 0, 'talk_ms_today', 0)
    end
    if current == 'talking' then
      redis.call('HINCRBY', KEYS[1], 'calls_today', 1)
      local talked = tonumber(now) - (tonumber(a[3] or '') or tonumber(now))
      redis.call('HINCRBY', KEYS[1], 'talk_ms_today', math.max(0, talked))
    end
  end
  redis.call('HSET', KEYS[1], 'idle_since', now)
  if current ~= wanted then
    redis.call('HSET', KEYS[1], 'call_state', wanted, 'last_change', now)
    agent_announce(ARGV[7], ARGV[8], wanted)
  end
  redis.call('HSET', KEYS[1], 'offer_uuid', '', 'offer_node', '', 'lease_until', 0, 'agent_leg', '',
             'no_answer_count', 0)
  if until_ms > 0 then
    redis.call('HSET', KEYS[1], 'wrapup_until', until_ms)
    redis.call('ZADD', KEYS[3], until_ms, ARGV[4])
  end
  return {current, wanted, now}
end

return agent_reply(req, run())
