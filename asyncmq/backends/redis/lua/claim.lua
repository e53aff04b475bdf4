-- ARGV: now, limit, lease_until, worker_id, rate_limit (0: none), rate_interval.
-- Returns {1, job, job, ...} (each job a flat field/value list), {0} for nothing to claim,
-- or {-1, seconds} when the rate limit holds starts back.
local now, limit, lease_until = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local meta = base .. 'meta'
if redis.call('HEXISTS', meta, 'paused') == 1 then return {0} end
local ready = redis.call('ZCARD', base .. 'waiting')
if ready == 0 then return {0} end
local rate, tokens = tonumber(ARGV[5]), 0
if rate > 0 then
  local per_s = rate / tonumber(ARGV[6])
  local bucket = redis.call('HMGET', meta, 'tokens', 'tokens_at')
  tokens = tonumber(bucket[1]) or rate
  tokens = math.min(rate, tokens + math.max(0, now - (tonumber(bucket[2]) or now)) * per_s)
  if tokens < 1 then
    redis.call('HSET', meta, 'tokens', tostring(tokens), 'tokens_at', ARGV[1])
    return {-1, tostring((1 - tokens) / per_s)}
  end
  limit = math.min(limit, math.floor(tokens))
end
local popped = redis.call('ZPOPMIN', base .. 'waiting', limit)
local out = {1}
for k = 1, #popped, 2 do
  local id = popped[k]
  local key = job_key(id)
  redis.call('ZREM', base .. 'since', id)
  redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HINCRBY', key, 'token', 1)
  redis.call('HSET', key, 'status', 'active', 'worker_id', ARGV[4], 'lease_until', lease_until)
  redis.call('ZADD', base .. 'active', lease_until, id)
  out[#out + 1] = redis.call('HGETALL', key)
end
if rate > 0 then
  redis.call('HSET', meta, 'tokens', tostring(tokens - #popped / 2), 'tokens_at', ARGV[1])
end
if ready > #popped / 2 then wake_workers() end -- chain the wake-up to the next idle worker
return out
