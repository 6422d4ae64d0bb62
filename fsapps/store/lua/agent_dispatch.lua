-- An agent became available: reserve it at once for the best waiting call of its groups
-- (VIP before normal, then the longest waiting), skipping calls this agent already failed -
-- unless only such calls wait: then the best of them (the agent is tried last, not never).
-- KEYS[1] = the agent hash
-- KEYS[2] = waiting hash (call uuid -> JSON of the queued call)
-- KEYS[3] = offers hash (call uuid -> extension reserved for it)
-- KEYS[4..] = for each of the agent's groups: its queue zset, then its group hash (the
--             lease is the longest group_callout_timeout of them plus the margin)
-- ARGV[1] = the agent's extension
-- ARGV[2] = now (ms)
-- ARGV[3] = lease margin (ms)
-- ARGV[4] = ring timeout (s) for a group hash without group_callout_timeout
-- Returns {call uuid, waiting JSON} for the call now offered this agent, or false when the
-- agent is not available or nobody waits for it.
local ext, now, margin = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local a = redis.call('HMGET', KEYS[1], 'logged_in', 'reg_state', 'seat_status', 'call_state',
                     'lease_until')
local free = a[1] == '1' and a[2] == 'reged' and a[3] == 'idle' and
  (a[4] == 'ready' or (a[4] == 'ring' and tonumber(a[5] or '0') < now))
if not free then
  return false
end

local best_uuid, best_score, best_index, best_info = nil, nil, nil, nil
-- The best call this agent already failed: taken only when no other call waits for it (a
-- call left waiting while its only free agent sits ready would wait for ever).
local again_uuid, again_score, again_index, again_info = nil, nil, nil, nil
for i = 4, #KEYS, 2 do
  local queue = KEYS[i]
  local heads = redis.call('ZRANGE', queue, 0, 19, 'WITHSCORES')
  for j = 1, #heads, 2 do
    local uuid, score = heads[j], tonumber(heads[j + 1])
    if best_score and score >= best_score then
      break
    end
    local info = redis.call('HGET', KEYS[2], uuid)
    local eligible = redis.call('HEXISTS', KEYS[3], uuid) == 0
    local failed = false
    if eligible and info then
      local ok, call = pcall(cjson.decode, info)
      if ok and type(call) == 'table' and type(call.tried) == 'table' then
        for _, tried in ipairs(call.tried) do
          if tried == ext then
            failed = true
          end
        end
      end
    end
    if eligible and not failed then
      best_uuid, best_score, best_index, best_info = uuid, score, i, info
      break
    end
    if eligible and (not again_score or score < again_score) then
      again_uuid, again_score, again_index, again_info = uuid, score, i, info
    end
  end
end
if not best_uuid then
  best_uuid, best_index, best_info = again_uuid, again_index, again_info
end
if not best_uuid then
  return false
end

local ring = 0
for i = 5, #KEYS, 2 do
  local group = KEYS[i]
  ring = math.max(ring, tonumber(redis.call('HGET', group, 'group_callout_timeout') or '') or
    tonumber(ARGV[4]))
end
local lease = ring * 1000 + margin

local stale = redis.call('HGET', KEYS[1], 'offer_uuid')
if stale and stale ~= '' and redis.call('HGET', KEYS[3], stale) == ext then
  redis.call('HDEL', KEYS[3], stale)
end
-- The call's node owns the reservation from now on (the reconciler checks it is alive).
local node = ''
local decoded, call = pcall(cjson.decode, best_info or '')
if decoded and type(call) == 'table' and type(call.node) == 'string' then
  node = call.node
end
redis.call('HSET', KEYS[1], 'call_state', 'ring', 'offer_uuid', best_uuid, 'offer_node', node,
           'lease_until', now + lease, 'last_change', now)
redis.call('HSET', KEYS[3], best_uuid, ext)
redis.call('ZREM', KEYS[best_index], best_uuid)
redis.call('HDEL', KEYS[2], best_uuid)
return {best_uuid, best_info or '{}'}
