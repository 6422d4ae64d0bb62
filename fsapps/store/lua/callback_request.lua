-- A waiting caller asks to be called back (the group's exit key with exit_to "callback"):
-- its queue entry becomes the callback's, in the same place (same score), in one step - unless
-- an agent already reserved itself for the caller (then the caller is connected instead) or
-- the caller is out of the queue.
-- KEYS[1] = the group's queue zset
-- KEYS[2] = waiting hash (queue entry uuid -> JSON)
-- KEYS[3] = offers hash (queue entry uuid -> extension reserved for it)
-- KEYS[4] = callbacks hash (callback id -> its record's JSON)
-- ARGV[1] = the caller's call uuid (its queue entry)
-- ARGV[2] = the callback's id (its queue entry from now on)
-- ARGV[3] = the callback's record (JSON)
-- ARGV[4] = the callback's queue entry (waiting JSON, "callback": true)
-- Returns {1, ""} when queued as a callback; {0, extension} when an agent is reserved for the
-- caller (connect it); {0, ""} when the caller is not in the queue.
local ext = redis.call('HGET', KEYS[3], ARGV[1])
if ext then
  return {0, ext}
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return {0, ''}
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
return {1, ''}
