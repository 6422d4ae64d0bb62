-- A wellClient agent not heard from since the cutoff is gone: take it out of the presence set,
-- only if it was not heard from since (a heart-beat between the reading and this step keeps
-- it), so that of several CTI servers sweeping at once exactly one logs it off.
-- KEYS[1] = the presence zset (job number -> ms last heard from)
-- ARGV[1] = the job number
-- ARGV[2] = the cutoff (ms): gone when last heard from at or before it
-- Returns 1 when this call took it out (the caller logs the agent off), else 0.
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen or tonumber(seen) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
