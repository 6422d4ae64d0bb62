-- Store one extension record and keep the number-alias index in step, atomically.
-- KEYS[1] = cti_exten@<domain> hash (extension -> JSON record)
-- KEYS[2] = the number-alias index hash (alias -> extension), same cluster slot
-- ARGV[1] = the extension
-- ARGV[2] = its JSON record
-- ARGV[3] = the record's number-alias ("" for none)
-- Returns {"ok", previous alias or ""}, or {"conflict", why} and nothing is written when the
-- alias is another extension's alias or id, or the extension is another one's alias.
local user, alias = ARGV[1], ARGV[3]
local owner = redis.call('HGET', KEYS[2], user)
if owner and owner ~= user then
  return {'conflict', 'extension ' .. user .. ' is the number-alias of ' .. owner}
end
if alias ~= '' and alias ~= user then
  owner = redis.call('HGET', KEYS[2], alias)
  if owner and owner ~= user then
    return {'conflict', 'number-alias ' .. alias .. ' belongs to ' .. owner}
  end
  if redis.call('HEXISTS', KEYS[1], alias) == 1 then
    return {'conflict', 'number-alias ' .. alias .. ' is an extension'}
  end
end
local previous = ''
local old = redis.call('HGET', KEYS[1], user)
if old then
  local ok, rec = pcall(cjson.decode, old)
  if ok and type(rec) == 'table' and type(rec['attribute']) == 'table' then
    local a = rec['attribute']['number-alias']
    if a ~= nil then previous = tostring(a) end
  end
end
if previous ~= '' and previous ~= alias and redis.call('HGET', KEYS[2], previous) == user then
  redis.call('HDEL', KEYS[2], previous)
end
redis.call('HSET', KEYS[1], user, ARGV[2])
if alias ~= '' and alias ~= user then
  redis.call('HSET', KEYS[2], alias, user)
end
return {'ok', previous}
