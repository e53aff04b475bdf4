-- ARGV: now, worker_id, expires_at, worker_json, lease_until, then id, token pairs.
-- Records the worker alive, forgets dead ones, extends the leases it still holds and
-- returns the ids of the jobs it no longer owns.
local workers, info = base .. 'workers', base .. 'workers:info'
redis.call('ZADD', workers, ARGV[3], ARGV[2])
redis.call('HSET', info, ARGV[2], ARGV[4])
local dead = redis.call('ZRANGEBYSCORE', workers, '-inf', '(' .. ARGV[1])
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', '(' .. ARGV[1])
  redis.call('HDEL', info, unpack(dead))
end
local lost = {}
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local key = job_key(id)
  if redis.call('HGET', key, 'token') == ARGV[i + 1] and redis.call('ZSCORE', base .. 'active', id) then
    redis.call('ZADD', base .. 'active', 'XX', ARGV[5], id)
    redis.call('HSET', key, 'lease_until', ARGV[5])
  else
    lost[#lost + 1] = id
  end
end
return lost
