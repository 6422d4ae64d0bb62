-- Drop an extension's browser-phone SIP password if this login holds it (logout).
-- KEYS[1] = p:{d}:webrtc:<ext> hash (password, owner)
-- ARGV[1] = owner: the digest of the CTI login token
-- Returns 1 when dropped, 0 when another login (or nobody) held it.
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
