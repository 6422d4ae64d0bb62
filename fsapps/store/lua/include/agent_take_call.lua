-- agent_take_call: a free agent reserves itself for the best waiting call of its groups
-- (pulled in by `--#include agent_take_call`, after agent_rules). The including script lays
-- out its KEYS as: KEYS[1] = the agent hash, KEYS[2] = the waiting hash, KEYS[3] = the offers
-- hash, and from KEYS[first] on, for each of the agent's groups, its queue zset then its
-- group hash.
-- Needs the skills snippet included before it.
-- VIP before normal, then the longest waiting (tiers: a level-2+ agent only calls that waited
-- long enough, see below; skills: only calls whose requirement, relaxed by their wait, the
-- agent meets), skipping calls this agent already failed -
-- unless only such calls wait: then the best of them (the agent is tried last, not never).
-- Returns {call uuid, waiting JSON} for the call now offered this agent, or false when the
-- agent is not available (agent_free) or nobody waits for it.
local function agent_take_call(ext, now, margin, default_ring, first)
  local a = redis.call('HMGET', KEYS[1], unpack(AGENT_FREE_FIELDS))
  if not agent_free(a) or not agent_may_move(a[5], 'ring') then
    return false
  end
  local have = nil  -- the agent's skills, read the first time a call requires some

  local best_uuid, best_score, best_index, best_info = nil, nil, nil, nil
  -- The best call this agent already failed: taken only when no other call waits for it (a
  -- call left waiting while its only free agent sits ready would wait for ever).
  local again_uuid, again_score, again_index, again_info = nil, nil, nil, nil
  for i = first, #KEYS, 2 do
    local queue = KEYS[i]
    -- tiers: an agent of level L > 1 takes a call of this group only once it waited
    -- (L - 1) x the group's tier wait (before, the caller waits for a lower level; at the
    -- deadline its handler looks for an agent again itself)
    local tier = redis.call('HMGET', KEYS[i + 1], 'tier_wait_seconds', 'level:' .. ext,
                            'skill_relax_seconds')
    local relax_s = tonumber(tier[3] or '') or 0
    local hold_back = ((tonumber(tier[2] or '') or 1) - 1) * (tonumber(tier[1] or '') or 0) * 1000
    local heads = redis.call('ZRANGE', queue, 0, 19, 'WITHSCORES')
    for j = 1, #heads, 2 do
      local uuid, score = heads[j], tonumber(heads[j + 1])
      if best_score and score >= best_score then
        break
      end
      local info = redis.call('HGET', KEYS[2], uuid)
      local eligible = redis.call('HEXISTS', KEYS[3], uuid) == 0 and
        (hold_back <= 0 or now - (score % 1e13) >= hold_back)
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
        local required = skills_required(ok and call or nil)
        if #required > 0 then
          required = skills_relaxed(required, now - (score % 1e13), relax_s)
          if #required > 0 then
            have = have or skills_of(redis.call('HGET', KEYS[1], 'skills'))
            eligible = skills_meet(have, required)
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
  for i = first + 1, #KEYS, 2 do
    local group = KEYS[i]
    ring = math.max(ring, tonumber(redis.call('HGET', group, 'group_callout_timeout') or '') or
      default_ring)
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
             'lease_until', now + lease, 'last_change', now, 'agent_leg', '')
  redis.call('HSET', KEYS[3], best_uuid, ext)
  redis.call('ZREM', KEYS[best_index], best_uuid)
  redis.call('HDEL', KEYS[2], best_uuid)
  return {best_uuid, best_info or '{}'}
end
