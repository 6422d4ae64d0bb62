-- A callback goes (back) into its group's queue, in the place its caller had (its score), at
-- most once whatever node asks:
--   "due": its retry time has come (it is in the due zset with a time <= now: taken out);
--   "recover": it is nowhere - not queued, not due, no agent reserved for it (the node placing
--              it died, or its agent was freed by a reconciler before it was called);
--   "again": its placement ended before the caller was called (the agent did not answer):
--            at once, whatever the due zset says.
-- KEYS[1] = the group's queue zset
-- KEYS[2] = waiting hash (queue entry uuid -> JSON)
-- KEYS[3] = offers hash (queue entry uuid -> extension reserved for it)
-- KEYS[4] = callbacks hash (callback id -> its record's JSON)
-- KEYS[5] = callbacks' due zset (callback id -> ms its next attempt may be queued)
-- ARGV[1] = the callback's id
-- ARGV[2] = "due", "recover" or "again"
-- ARGV[3] = now (ms)
-- ARGV[4] = its score in the queue
-- ARGV[5] = its queue entry (waiting JSON)
-- ARGV[6] = its record (JSON) to keep, "" = keep the one there
-- Returns 1 when queued now, 0 when not (gone: finished or dropped; or the condition failed).
local id, mode = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[4], id) == 0 then
  redis.call('ZREM', KEYS[5], id)
  return 0
end
if redis.call('ZSCORE', KEYS[1], id) then
  return 0
end
local due = redis.call('ZSCORE', KEYS[5], id)
if mode == 'due' then
  if not due or tonumber(due) > tonumber(ARGV[3]) then
    return 0
  end
elseif mode == 'recover' then
  if due or redis.call('HEXISTS', KEYS[3], id) == 1 then
    return 0
  end
end
redis.call('ZREM', KEYS[5], id)
redis.call('ZADD', KEYS[1], ARGV[4], id)
redis.call('HSET', KEYS[2], id, ARGV[5])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], id, ARGV[6])
end
return 1
