-- End an offer that did not become a call (no answer, busy, rejected, not registered, or the
-- caller hung up) - only if the agent's reservation is still this call's. A missed offer is
-- decided here too, in the same step: no_answer, then ready - or busy (seat busy as well)
-- once the agent missed max_no_answer offers in a row (agent_state.after_no_answer).
-- KEYS[1] = the agent hash
-- KEYS[2] = offers hash (call uuid -> extension reserved for it)
-- ARGV[1] = call uuid
-- ARGV[2] = now (ms)
-- ARGV[3] = outcome: "missed" (counts as a no-answer), "unregistered", or "cancel"
-- ARGV[4] = "1": only if the agent's lease ran out before now (none counts as run out; the
--           reconciler's reason: the handler may have rung meanwhile, renewing the lease)
-- ARGV[5] = max_no_answer: misses in a row that make the agent busy (0 = never)
-- ARGV[6] = the agent leg the caller found gone ("*": none found): only if the agent still
--           has that leg (the reconciler asked the switch about it; a ring since recorded
--           another); that leg's end counts as told (leg_pending cleared)
-- ARGV[7] = request id: the same in a retry, which gets the first run's reply (agent_request)
-- ARGV[8] = the agent's status channel (agent_<ext>)
-- ARGV[9] = its message with {{status}} where the state goes (agent_announce: the states
--           moved through are told here, in this step; '' = told by nobody)
-- Returns {state the offer's end led to, final call state, consecutive misses, now, moved}:
-- with moved = 1 the first was told, then the final one when it differs (a miss:
-- "no_answer", then "ready" or "busy"); moved = 0 when the agent is in a state the offer's end does not
-- undo (it left the ring for busy, rest or no_ready: the reservation is released, the state
-- kept, nothing to publish; both states are that one). False when the
-- agent's reservation already belongs to another call (its lease ran out and it was
-- re-offered: then nothing about the agent changes), or a condition of ARGV[4] / ARGV[6]
-- no longer holds.
--#include agent_rules
--#include agent_request
--#include agent_announce
local req = ARGV[7]
local prior = agent_repeat(req)
if prior ~= nil then
  return prior
end

local function run()
  local uuid, now, outcome = ARGV[1], tonumber(ARGV[2]), ARGV[3]
  local limit = tonumber(ARGV[5]) or 0
  local a = redis.call('HMGET', KEYS[1], 'call_state', 'offer_uuid', 'lease_until', 'agent_leg',
                        'leg_pending')
  if ARGV[4] == '1' then
    local lease = tonumber(a[3] or '') or 0
    if a[2] ~= uuid or lease >= now then
      return false
    end
  end
  if ARGV[6] ~= '*' and (a[4] or '') ~= ARGV[6] then
    return false
  end
  local ext = redis.call('HGET', KEYS[1], 'extension')
  if redis.call('HGET', KEYS[2], uuid) == ext then
    redis.call('HDEL', KEYS[2], uuid)
  end
  if a[2] ~= uuid then
    return false
  end
  local current = a[1]
  local misses = tonumber(redis.call('HGET', KEYS[1], 'no_answer_count') or '0')
  redis.call('HSET', KEYS[1], 'offer_uuid', '', 'offer_node', '', 'lease_until', 0,
             'agent_leg', '')
  if ARGV[6] ~= '*' and (a[5] or '') == ARGV[6] then
    redis.call('HSET', KEYS[1], 'leg_pending', '')
  end
  if outcome == 'unregistered' then
    -- The switch says the phone is gone: repair the registration state we believed. It made
    -- no leg for the offer (the user endpoint refuses before any channel exists): no hangup
    -- will be told of it.
    redis.call('HSET', KEYS[1], 'reg_state', 'unreg')
    if (a[5] or '') == (a[4] or '') then
      redis.call('HSET', KEYS[1], 'leg_pending', '')
    end
  end
  local ended = 'ready'
  if outcome == 'missed' then
    ended = 'no_answer'
  end
  -- The offer's end moves only the states of the offer itself: an agent that pressed busy (or
  -- rest, no_ready) while it rang keeps it.
  local of_the_offer = current == 'ring' or current == 'talking' or current == 'no_answer'
  if not of_the_offer or not agent_may_move(current, ended) then
    return {current, current, misses, now, 0}
  end
  local final = ended
  if outcome == 'missed' then
    -- a missed offer was the agent's turn (longest_idle): else it would be rung first again
    redis.call('HSET', KEYS[1], 'idle_since', now)
    misses = redis.call('HINCRBY', KEYS[1], 'no_answer_count', 1)
    final = agent_after_no_answer(misses, limit)
    if final == 'busy' then
      redis.call('HSET', KEYS[1], 'seat_status', 'busy')
    end
  end
  redis.call('HSET', KEYS[1], 'call_state', final, 'last_change', now)
  agent_announce(ARGV[8], ARGV[9], ended)
  if final ~= ended then
    agent_announce(ARGV[8], ARGV[9], final)
  end
  return {ended, final, misses, now, 1}
end

return agent_reply(req, run())
