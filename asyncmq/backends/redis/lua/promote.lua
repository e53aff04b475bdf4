-- ARGV: now, limit. Moves due delayed jobs to waiting; returns {promoted, next_due or false}.
local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', base .. 'delayed', id)
  local key = job_key(id)
  if redis.call('HGET', key, 'status') == 'delayed' then
    redis.call('HSET', key, 'status', 'waiting', 'ready_at', ARGV[1])
    redis.pcall('HINCRBY', key, 'token', 1) -- a garbage token stays, for the claim to report
    push_waiting(id, redis.call('HGET', key, 'priority'), ARGV[1])
  end
end
if #due > 0 then wake_workers() end
local following = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')[2]
return {#due, following or false}
