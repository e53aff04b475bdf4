-- ARGV: 'add' or 'remove', a job id, the id of a process (its backend instance). Registers
-- (or unregisters) the process as waiting for the end of the job, for `Queue.result`: see
-- `wake_result_waiters` in common.lua. Registrations of a process that vanished expire.
local key = base .. 'waits:' .. ARGV[2]
if ARGV[1] == 'add' then
  redis.call('SADD', key, ARGV[3])
  redis.call('EXPIRE', key, 3600)
  redis.call('SET', base .. 'waits', '1', 'EX', 3600)
else
  redis.call('SREM', key, ARGV[3])
end
return 1
