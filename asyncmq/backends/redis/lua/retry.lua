-- ARGV: id, now. Sends a failed, expired or cancelled job back to waiting, attempts reset.
-- Sent again after a lost reply, it finds its own retry (the same `now` as ready_at, with
-- no attempt since) and returns the job again.
local id = ARGV[1]
local key = job_key(id)
local status = redis.call('HGET', key, 'status')
if redis.call('HGET', key, 'ready_at') == ARGV[2] and status == 'waiting' then
  return redis.call('HGETALL', key)
end
if status ~= 'failed' and status ~= 'expired' and status ~= 'cancelled' then return {} end
unindex(id, status)
redis.call('PERSIST', key)
redis.call('HINCRBY', key, 'token', 1)
redis.call('HSET', key, 'status', 'waiting', 'attempt', '0', 'stalls', '0', 'ready_at', ARGV[2])
redis.call('HDEL', key, 'error', 'result', 'started_at', 'finished_at')
push_waiting(id, redis.call('HGET', key, 'priority'), ARGV[2])
wake_workers()
return redis.call('HGETALL', key)
