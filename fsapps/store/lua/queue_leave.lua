-- A call leaves the queue (caller hung up, policy ended it, or it is being connected).
-- KEYS[1] = group queue zset
-- KEYS[2] = waiting hash
-- KEYS[3] = offers hash
-- ARGV[1] = call uuid
-- Returns {was queued (1/0), extension reserved for the call or ""}: a reservation made for a
-- call that is leaving must be released by the caller of this script.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local ext = redis.call('HGET', KEYS[3], ARGV[1]) or ''
return {removed, ext}
