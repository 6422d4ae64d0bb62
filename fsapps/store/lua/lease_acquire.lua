-- Take or renew a lease, atomically: it becomes ours unless another owner holds it unexpired.
-- KEYS[1] = the lease (string holding the owner token; expires by itself)
-- ARGV[1] = owner token (e.g. "<node>:<call uuid>")
-- ARGV[2] = time to live in milliseconds (a positive integer)
-- Returns 1 when the lease is ours now (taken, or renewed with a fresh expiry), 0 when another
-- owner holds it (nothing changed). A bad ttl is an error and changes nothing.
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply('lease ttl must be a positive integer of milliseconds, got ' ..
    tostring(ARGV[2]))
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
