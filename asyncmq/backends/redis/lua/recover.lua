-- ARGV: now, max_stalls, limit, ttl, recovery_id. Takes back active jobs whose lease ended:
-- to waiting, or to failed past max_stalls. Returns the recovered jobs. A recovery sent again
-- (its reply was lost with a dropped connection) returns the jobs the first one took back, so
-- their job:stalled events are not lost.
local receipt = base .. 'recovery:' .. ARGV[5]
local done = redis.call('LRANGE', receipt, 0, -1)
if #done > 0 then
  local again = {}
  for _, id in ipairs(done) do again[#again + 1] = redis.call('HGETALL', job_key(id)) end
  return again
end
local ids = redis.call('ZRANGEBYSCORE', base .. 'active', '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', base .. 'active', id)
  local key = job_key(id)
  if redis.call('EXISTS', key) == 1 then -- else an index entry that lost its record: dropped
    local stalls = redis.call('HINCRBY', key, 'stalls', 1)
    redis.call('HINCRBY', key, 'token', 1)
    redis.call('HDEL', key, 'lease_until', 'worker_id', 'delay_until') -- due now, not late
    if stalls > tonumber(ARGV[2]) then
      local message = 'the job\'s worker vanished ' .. stalls .. ' times (max_stalls=' .. ARGV[2] .. ')'
      redis.call('HSET', key, 'status', 'failed', 'finished_at', ARGV[1],
        'error', cjson.encode({type = 'StalledJobError', message = message}))
      push_finished(id, 'failed', ARGV[1], tonumber(ARGV[4]))
    else
      redis.call('HSET', key, 'status', 'waiting', 'ready_at', ARGV[1])
      push_waiting(id, redis.call('HGET', key, 'priority'), ARGV[1])
    end
    out[#out + 1] = redis.call('HGETALL', key)
    redis.call('RPUSH', receipt, id)
  end
end
if #out > 0 then
  redis.call('EXPIRE', receipt, 60)
  wake_workers()
end
return out
