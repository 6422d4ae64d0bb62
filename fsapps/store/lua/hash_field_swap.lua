-- Compare-and-set of one hash field: replace (or delete) it only while it still holds the
-- text the caller read, so a write made meanwhile by another node is never undone.
-- KEYS[1] = the hash
-- ARGV[1] = the field
-- ARGV[2] = the text the caller read
-- ARGV[3] = "set" or "del"
-- ARGV[4] = the new text (with "set")
-- Returns 1 when the field changed, 0 when it held something else.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == 'del' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
end
return 1
