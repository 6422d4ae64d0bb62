-- Remove an agent (nway_rm_ext) unless it is on a call: its hash, its entries in the agents
-- set and the wrap-ups, and its membership of the domain's groups, in one step (a reservation
-- made at the same moment either comes first and keeps the agent, or finds no agent).
-- KEYS[1] = the agent hash
-- KEYS[2] = the agents set of the domain
-- KEYS[3] = the wrap-ups zset of the domain
-- KEYS[4..] = the member zsets of the domain's groups
-- ARGV[1] = the extension
-- Returns {'removed', ''}, {'absent', ''} when there was no agent hash (the memberships are
-- removed all the same), or {'busy', call state} when the agent rings, talks or is in an IVR
-- (nothing changes).
local state = redis.call('HGET', KEYS[1], 'call_state')
if state == 'ring' or state == 'talking' or state == 'ivr' then
  return {'busy', state}
end
local existed = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
for i = 4, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
if existed == 1 then
  return {'removed', ''}
end
return {'absent', ''}
