-- End an offer that did not become a call (no answer, busy, rejected, not registered, or the
-- caller hung up) - only if the agent's reservation is still this call's.
-- KEYS[1] = the agent hash
-- KEYS[2] = offers hash (call uuid -> extension reserved for it)
-- ARGV[1] = call uuid
-- ARGV[2] = now (ms)
-- ARGV[3] = outcome: "missed" (counts as a no-answer), "unregistered", or "cancel"
-- ARGV[4] = "1": only if the agent still rings on a lease that ran out before now (the
--           reconciler's reason: the handler may have rung meanwhile, renewing the lease)
-- Returns {call_state, consecutive misses} after the release, or false when the agent's
-- reservation already belongs to another call (its lease ran out and it was re-offered:
-- then nothing about the agent changes), or, with ARGV[4], its lease no longer ran out.
local uuid, now, outcome = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if ARGV[4] == '1' then
  local a = redis.call('HMGET', KEYS[1], 'call_state', 'offer_uuid', 'lease_until')
  local lease = tonumber(a[3] or '') or 0
  if a[1] ~= 'ring' or a[2] ~= uuid or lease <= 0 or lease >= now then
    return false
  end
end
local ext = redis.call('HGET', KEYS[1], 'extension')
if redis.call('HGET', KEYS[2], uuid) == ext then
  redis.call('HDEL', KEYS[2], uuid)
end
if redis.call('HGET', KEYS[1], 'offer_uuid') ~= uuid then
  return false
end
redis.call('HSET', KEYS[1], 'offer_uuid', '', 'offer_node', '', 'lease_until', 0,
           'agent_leg', '', 'last_change', now)
local misses = tonumber(redis.call('HGET', KEYS[1], 'no_answer_count') or '0')
local state = 'ready'
if outcome == 'missed' then
  misses = redis.call('HINCRBY', KEYS[1], 'no_answer_count', 1)
  state = 'no_answer'
elseif outcome == 'unregistered' then
  -- The switch says the phone is gone: repair the registration state we believed.
  redis.call('HSET', KEYS[1], 'reg_state', 'unreg')
end
redis.call('HSET', KEYS[1], 'call_state', state)
return {state, misses}
