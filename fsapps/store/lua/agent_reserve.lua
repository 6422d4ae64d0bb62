-- Reserve the first available agent of a call's candidate list, or queue the call - one
-- atomic step, so an agent is never offered two calls and a caller never misses an agent
-- who turned ready while it was being queued.
-- KEYS[1] = group hash (its current_ext_number is updated for the cyclic modes)
-- KEYS[2] = group queue zset (call uuid, score = VIP first, then arrival)
-- KEYS[3] = waiting hash (call uuid -> JSON of the queued call)
-- KEYS[4] = offers hash (call uuid -> extension reserved for it)
-- KEYS[5..] = agent hashes of the candidates, in the order to try them
-- ARGV[1] = call uuid
-- ARGV[2] = node that owns the call
-- ARGV[3] = now (ms)
-- ARGV[4] = lease (ms): the reservation frees itself after this unless confirmed or released
-- ARGV[5] = "1" to queue the call when nobody is available, "0" not to
-- ARGV[6] = queue score
-- ARGV[7] = waiting JSON (its skills: the call's requirement - only agents meeting it, relaxed
--           by the wait as the group's skill_relax_seconds says, are candidates; include/skills)
-- ARGV[8] = "1" to record the reserved agent as the group's current_ext_number
-- ARGV[9] = request id: the same in a retry, which gets the first run's reply (agent_request:
--           recorded in the hash of the agent it reserved)
-- ARGV[10] = the uuid the handler gives the agent's leg when it rings the agent at once ("" or
--           none: reserve only): the reservation is then the ring as well (the leg recorded
--           as Agents.ringing records it), no second step before the INVITE
-- ARGV[11] = today (YYYYMMDD): the day the agents' daily counters must be of to count
-- ARGV[12] = when the call arrived (ms; tiers: how long it waited)
-- ARGV[13] = how many of KEYS[5..] the call has not tried yet (they come first; the rest
--           failed it already)
-- ARGV[14] = the agent a memory mode remembers for this caller ("" none): first in its tier
-- ARGV[15..] = ring_all: the legs for the second, third... agent it reserves
-- Returns {"reserved", ext, now, reg_node} (the agent rings since now: publish that; the node
-- its phone is registered on, for the dial string) - ring_all with a fifth element when it
-- reserved more than one: {ext, reg_node, leg, ext, reg_node, leg, ...} of the others; {"offered", ext} when an agent turning
-- ready already reserved itself for this call; {"queued"}; or {"none"}.
--#include agent_rules
--#include skills
local uuid, node = ARGV[1], ARGV[2]
local now, lease = tonumber(ARGV[3]), tonumber(ARGV[4])

local req = ARGV[9] or ''
local already = redis.call('HGET', KEYS[4], uuid)
if already and req ~= '' then
  -- a retry of the reservation that reserved this agent (its reply was lost): the same reply
  for i = 5, #KEYS do
    local candidate = KEYS[i]
    local last = redis.call('HMGET', candidate, 'last_req', 'last_reply')
    if last[1] == req and last[2] then
      return cjson.decode(last[2])
    end
  end
end
if already then
  redis.call('ZREM', KEYS[2], uuid)
  redis.call('HDEL', KEYS[3], uuid)
  return {'offered', already}
end

-- The group's strategy and tiers (routing.STRATEGIES, docs/acd.md): the candidates are
-- ordered here, from fields read anyway, so no strategy costs a round trip. Order: not tried
-- yet before tried, then level (tier), then the strategy's measure (the remembered agent of a
-- memory mode first), then the call mode's order. A level is allowed only when no tier wait is
-- set, or it is the lowest level an agent is staffed on (logged in, registered, seat idle, not
-- paused), or the caller waited (level - lowest) x the tier wait.
local g = redis.call('HMGET', KEYS[1], 'agent_strategy', 'tier_wait_seconds',
                     'skill_relax_seconds')
local strategy = g[1] or ''
local tier_wait = (tonumber(g[2] or '') or 0) * 1000
local today = ARGV[11] or ''
local waited = now - (tonumber(ARGV[12] or '') or now)
-- Skills: an agent not meeting the call's (relaxed) requirement is no candidate at all, nor
-- counts as staffed for the tiers (the call cannot wait for it).
local required = {}
if string.find(ARGV[7] or '', '"skills": [[', 1, true) then
  local ok, call = pcall(cjson.decode, ARGV[7])
  if ok then
    required = skills_relaxed(skills_required(call), waited,
                              tonumber(g[3] or '') or 0)
  end
end
local untried = tonumber(ARGV[13] or '') or (#KEYS - 4)
local remembered = ARGV[14] or ''
local WANTED = {unpack(AGENT_FREE_FIELDS)}
local base = #WANTED
for _, f in ipairs({'extension', 'idle_since', 'stats_day', 'calls_today', 'talk_ms_today',
                    'skills'}) do
  WANTED[#WANTED + 1] = f
end
-- The common case in one pass that stops at the first free agent, as before the strategies
-- (a scan of every candidate per call cost ~1,000 Redis commands a decision with 500 agents):
-- no strategy, no remembered agent, and that first free agent (meeting the call's skills, if
-- it requires some: one HGET more for each free agent, none for the others) on level 1.
-- Nothing could come before it in the full ordering below: level 1 is the lowest and always
-- allowed, and every candidate after it is tried as much or more, and later. Anything else
-- (or a first free agent on a higher level): the full ordering.
local first = nil
-- The fast pass read every candidate and none was free: nothing to order (the full pass read
-- them all again, then the levels - ~3 commands per agent per queued caller at 500 x 40).
local none_free = false
if strategy == '' and remembered == '' then
  none_free = true
  for i = 5, #KEYS do
    local a = redis.call('HMGET', KEYS[i], unpack(AGENT_FREE_FIELDS))
    if agent_free(a) and agent_may_move(a[5], 'ring') and (#required == 0 or
        skills_meet(skills_of(redis.call('HGET', KEYS[i], 'skills')), required)) then
      local ext = redis.call('HGET', KEYS[i], 'extension')
      none_free = false
      if ext and (tonumber(redis.call('HGET', KEYS[1], 'level:' .. ext) or '') or 1) <= 1 then
        local tried = 0
        if i - 4 > untried then
          tried = 1
        end
        first = {ext = ext, level = 1, tried = tried, measure = 0, index = i}
      end
      break
    end
  end
end
local candidates = {}
local lowest = nil
if first then
  candidates[1] = first
  lowest = 1
elseif not none_free then
  for i = 5, #KEYS do
    local a = redis.call('HMGET', KEYS[i], unpack(WANTED))
    local ext = a[base + 1]
    if ext and (#required == 0 or skills_meet(skills_of(a[base + 6]), required)) then
      local level = tonumber(redis.call('HGET', KEYS[1], 'level:' .. ext) or '') or 1
      local staffed = a[1] ~= '0' and a[2] == '1' and a[3] == 'reged' and a[4] == 'idle' and
        a[5] ~= 'busy' and a[5] ~= 'rest' and a[5] ~= 'no_ready'
      if staffed and (not lowest or level < lowest) then
        lowest = level
      end
      if agent_free(a) and agent_may_move(a[5], 'ring') then
        local measure = 0
        if strategy == 'longest_idle' then
          measure = tonumber(a[base + 2] or '') or 0
        elseif strategy == 'fewest_calls' and a[base + 3] == today then
          measure = tonumber(a[base + 4] or '') or 0
        elseif strategy == 'least_talk_time' and a[base + 3] == today then
          measure = tonumber(a[base + 5] or '') or 0
        end
        if ext == remembered then
          measure = -1
        end
        local tried = 0
        if i - 4 > untried then
          tried = 1
        end
        candidates[#candidates + 1] = {ext = ext, level = level, tried = tried,
                                       measure = measure, index = i}
      end
    end
  end
end
local function allowed(c)
  return tier_wait <= 0 or not lowest or c.level <= lowest or
    waited >= (c.level - lowest) * tier_wait
end
local chosen = {}
for _, c in ipairs(candidates) do
  if allowed(c) then
    chosen[#chosen + 1] = c
  end
end
table.sort(chosen, function(x, y)
  if x.tried ~= y.tried then return x.tried < y.tried end
  if x.level ~= y.level then return x.level < y.level end
  if x.measure ~= y.measure then return x.measure < y.measure end
  return x.index < y.index
end)
if #chosen > 0 then
  -- ring_all: every chosen agent of the first one's class (tried or not, level) at once
  local ring = {chosen[1]}
  if strategy == 'ring_all' then
    for j = 2, #chosen do
      if chosen[j].tried == chosen[1].tried and chosen[j].level == chosen[1].level then
        ring[#ring + 1] = chosen[j]
      end
    end
  end
  local reply = nil
  local others = {}
  for n, c in ipairs(ring) do
    local at, ext = c.index, c.ext
    local stale = redis.call('HGET', KEYS[at], 'offer_uuid')
    if stale and stale ~= '' and redis.call('HGET', KEYS[4], stale) == ext then
      redis.call('HDEL', KEYS[4], stale)
    end
    -- the first agent's leg is ARGV[10]; ring_all's n-th is ARGV[13 + n]
    local leg = ARGV[10] or ''
    if n > 1 then
      leg = ARGV[13 + n] or ''
    end
    redis.call('HSET', KEYS[at], 'call_state', 'ring', 'offer_uuid', uuid, 'offer_node', node,
               'lease_until', now + lease, 'last_change', now, 'agent_leg', leg)
    if leg ~= '' then
      redis.call('HSET', KEYS[at], 'leg_pending', leg, 'leg_node', node)
    end
    local reg = redis.call('HGET', KEYS[at], 'reg_node') or ''
    if n == 1 then
      -- the offers hash names one agent per call: the first (ring_all's others hold the
      -- call in their own hash; each is released by the handler)
      redis.call('HSET', KEYS[4], uuid, ext)
      reply = {'reserved', ext, now, reg}
    else
      others[#others + 1] = ext
      others[#others + 1] = reg
      others[#others + 1] = leg
    end
  end
  if #others > 0 then
    reply[5] = others
  end
  redis.call('ZREM', KEYS[2], uuid)
  redis.call('HDEL', KEYS[3], uuid)
  if ARGV[8] == '1' then
    redis.call('HSET', KEYS[1], 'current_ext_number', ring[1].ext)
  end
  if req ~= '' then
    for _, c in ipairs(ring) do
      redis.call('HSET', KEYS[c.index], 'last_req', req, 'last_reply', cjson.encode(reply))
    end
  end
  return reply
end

if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[6], uuid)
  redis.call('HSET', KEYS[3], uuid, ARGV[7])
  return {'queued'}
end
return {'none'}
