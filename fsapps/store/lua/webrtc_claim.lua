-- Give one CTI login the SIP password of an extension's browser phone, atomically.
-- KEYS[1] = p:{d}:webrtc:<ext> hash (password, owner)
-- ARGV[1] = owner: the digest of the CTI login token asking
-- ARGV[2] = the new SIP password (random, made by the caller)
-- ARGV[3] = lifetime in ms
-- ARGV[4] = "takeover": a new login replaces a live one; "refuse": it is refused
-- ARGV[5] = "1": a renewal (the owner keeps its password; refused if another took it over)
-- Returns {"ok", password} or {"taken", ""} (renewal of a credential another login holds, or
-- none any more) or {"busy", ""} (refuse mode, another login holds it).
local owner = redis.call('HGET', KEYS[1], 'owner')
if ARGV[5] == '1' then
  if owner ~= ARGV[1] then
    return {'taken', ''}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'ok', redis.call('HGET', KEYS[1], 'password')}
end
if owner and owner ~= ARGV[1] and ARGV[4] == 'refuse' then
  return {'busy', ''}
end
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'ok', redis.call('HGET', KEYS[1], 'password')}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'password', ARGV[2], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'ok', ARGV[2]}
