-- Give a lease back, atomically, only if we still own it (it may have expired and been taken
-- by another owner since; that owner's lease must survive).
-- KEYS[1] = the lease (string holding the owner token)
-- ARGV[1] = owner token
-- Returns 1 when our lease was deleted, 0 when it was not ours (or already gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
