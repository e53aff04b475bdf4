-- ARGV: now, then id, token pairs. Hands claimed jobs back to waiting, attempt not counted.
for i = 2, #ARGV, 2 do
  local id, key = ARGV[i], job_key(ARGV[i])
  if redis.call('HGET', key, 'token') == ARGV[i + 1] and redis.call('ZREM', base .. 'active', id) == 1 then
    redis.call('HINCRBY', key, 'attempt', -1)
    redis.call('HINCRBY', key, 'token', 1)
    redis.call('HSET', key, 'status', 'waiting')
    redis.call('HDEL', key, 'lease_until', 'worker_id', 'started_at', 'delay_until')
    push_waiting(id, redis.call('HGET', key, 'priority'), redis.call('HGET', key, 'ready_at') or ARGV[1])
  end
end
wake_workers()
return 1
