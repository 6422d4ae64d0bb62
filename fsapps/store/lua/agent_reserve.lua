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
-- ARGV[7] = waiting JSON
-- ARGV[8] = "1" to record the reserved agent as the group's current_ext_number
-- ARGV[9] = request id: the same in a retry, which gets the first run's reply (agent_request:
--           recorded in the hash of the agent it reserved)
-- ARGV[10] = the uuid the handler gives the agent's leg when it rings the agent at once ("" or
--           none: reserve only): the reservation is then the ring as well (the leg recorded
--           as Agents.ringing records it), no second step before the INVITE
-- Returns {"reserved", ext, now, reg_node} (the agent rings since now: publish that; the node
-- its phone is registered on, for the dial string); {"offered", ext} when an agent turning
-- ready already reserved itself for this call; {"queued"}; or {"none"}.
--#include agent_rules
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

for i = 5, #KEYS do
  local agent = KEYS[i]
  local a = redis.call('HMGET', agent, unpack(AGENT_FREE_FIELDS))
  if agent_free(a) and agent_may_move(a[5], 'ring') then
    local ext = redis.call('HGET', agent, 'extension')
    local stale = redis.call('HGET', agent, 'offer_uuid')
    if stale and stale ~= '' and redis.call('HGET', KEYS[4], stale) == ext then
      redis.call('HDEL', KEYS[4], stale)
    end
    local leg = ARGV[10] or ''
    redis.call('HSET', agent, 'call_state', 'ring', 'offer_uuid', uuid, 'offer_node', node,
               'lease_until', now + lease, 'last_change', now, 'agent_leg', leg)
    if leg ~= '' then
      redis.call('HSET', agent, 'leg_pending', leg, 'leg_node', node)
    end
    redis.call('HSET', KEYS[4], uuid, ext)
    redis.call('ZREM', KEYS[2], uuid)
    redis.call('HDEL', KEYS[3], uuid)
    if ARGV[8] == '1' then
      redis.call('HSET', KEYS[1], 'current_ext_number', ext)
    end
    local reply = {'reserved', ext, now, redis.call('HGET', agent, 'reg_node') or ''}
    if req ~= '' then
      redis.call('HSET', agent, 'last_req', req, 'last_reply', cjson.encode(reply))
    end
    return reply
  end
end

if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[6], uuid)
  redis.call('HSET', KEYS[3], uuid, ARGV[7])
  return {'queued'}
end
return {'none'}
