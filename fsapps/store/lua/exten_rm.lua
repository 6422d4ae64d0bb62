-- Remove one extension record and its number-alias from the index, atomically.
-- KEYS[1] = cti_exten@<domain> hash (extension -> JSON record)
-- KEYS[2] = the number-alias index hash (alias -> extension), same cluster slot
-- ARGV[1] = the extension
-- Returns {1, its alias or ""} when removed, {0, ""} when there was no such extension.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return {0, ''}
end
redis.call('HDEL', KEYS[1], ARGV[1])
local alias = ''
local ok, rec = pcall(cjson.decode, old)
if ok and type(rec) == 'table' and type(rec['attribute']) == 'table' then
  local a = rec['attribute']['number-alias']
  if a ~= nil then alias = tostring(a) end
end
if alias ~= '' and redis.call('HGET', KEYS[2], alias) == ARGV[1] then
  redis.call('HDEL', KEYS[2], alias)
end
return {1, alias}
