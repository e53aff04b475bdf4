-- ARGV: id, now, ttl. Cancels a waiting, delayed or active job; returns it, or {} if it
-- is missing or already finished. Sent again after a lost reply, it finds its own cancel
-- (the same `now` as finished_at) and returns the job again.
local id = ARGV[1]
local key = job_key(id)
local status = redis.call('HGET', key, 'status')
if status == 'cancelled' and redis.call('HGET', key, 'finished_at') == ARGV[2] then
  return redis.call('HGETALL', key)
end
if status ~= 'waiting' and status ~= 'delayed' and status ~= 'active' then return {} end
unindex(id, status)
redis.call('HINCRBY', key, 'token', 1)
redis.call('HSET', key, 'status', 'cancelled', 'finished_at', ARGV[2])
redis.call('HDEL', key, 'lease_until', 'worker_id')
push_finished(id, 'cancelled', ARGV[2], tonumber(ARGV[3]))
return redis.call('HGETALL', key)
