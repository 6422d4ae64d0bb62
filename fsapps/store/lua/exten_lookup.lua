-- Find a directory user by id or by number-alias in one round trip.
-- KEYS[1] = cti_exten@<domain> hash (extension -> JSON record)
-- KEYS[2] = the number-alias index hash (alias -> extension), same cluster slot
-- ARGV[1] = the name asked for (an extension or a number-alias)
-- Returns {extension, record}, or nil when neither knows the name.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record then
  return {ARGV[1], record}
end
local user = redis.call('HGET', KEYS[2], ARGV[1])
if not user then
  return nil
end
record = redis.call('HGET', KEYS[1], user)
if not record then
  return nil
end
return {user, record}
