-- The rows of GET /api/get_extensions in one step (a read: changes nothing): for each agent
-- hash the caller names, its extension, reg_state, seat_status, call_state and last_change,
-- as one text the CTI server compares with the last one it encoded (equal: it answers the
-- JSON it encoded then; fsapps.server.reads). The caller names the hashes of the extensions
-- it saw in the agents set last time; when the set has changed since, nothing is read and
-- the caller reads the set again.
-- KEYS[1] = the agents set (extensions with an agent hash)
-- KEYS[2..] = the agent hashes of ARGV[2..], in that order (the caller's extension order)
-- ARGV[1] = the number of extensions named (#KEYS - 1)
-- ARGV[2..] = the extensions, one per agent hash
-- Returns {0} when the set holds other extensions than ARGV[2..]; else {1, text}: per agent
-- whose hash has any of these fields (a hash without its extension field is no agent's), "<extension>\t<reg_state>\t<seat_status>\t<call_state>\t<last_change>\n"
-- (a field the hash lacks is empty).
local n = tonumber(ARGV[1])
-- one SMEMBERS compared in Lua (a redis.call per extension costs more than the reads)
local members = redis.call('SMEMBERS', KEYS[1])
if #members ~= n then
  return {0}
end
local named = {}
for i = 2, n + 1 do
  named[ARGV[i]] = true
end
for _, ext in ipairs(members) do
  if not named[ext] then
    return {0}
  end
end
local out = {}
for i, key in ipairs(KEYS) do
  if i > 1 then
    -- one HMGET per agent; all five absent: no hash (every hash has its extension field)
    local a = redis.call('HMGET', key, 'extension', 'reg_state', 'seat_status', 'call_state',
                         'last_change')
    if a[1] or a[2] or a[3] or a[4] or a[5] then
      out[#out + 1] = table.concat({a[1] or '', a[2] or '', a[3] or '', a[4] or '',
                                    a[5] or ''}, '\t')
    end
  end
end
out[#out + 1] = ''
return {1, table.concat(out, '\n')}
