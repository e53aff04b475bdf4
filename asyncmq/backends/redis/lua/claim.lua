-- ARGV: now, limit, lease_until, worker_id, rate_limit (0: none), rate_interval, claim_id.
-- Returns {1, {ids dropped}, id, job, id, job, ...} (each job a flat field/value list), {0}
-- for nothing to claim, or {-1, seconds} when the rate limit holds starts back. Dropped: ids
-- in line whose record is gone. A record the caller cannot read is still claimed: the
-- caller fails it with the reason (so no counter is assumed to be a number here). Each job
-- claimed, readable or not, adds to `claimed`.
-- A claim sent again (its reply was lost with a dropped connection) returns the jobs the
-- first one took, still owned by this worker, instead of leaving them to stall.
local now, limit, lease_until = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local meta, receipt = base .. 'meta', base .. 'claim:' .. ARGV[7]
local taken = redis.call('LRANGE', receipt, 0, -1)
if #taken > 0 then
  local out = {1, {}}
  for _, id in ipairs(taken) do
    if redis.call('HGET', job_key(id), 'worker_id') == ARGV[4] then
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGETALL', job_key(id))
    end
  end
  return out
end
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
local dropped = {}
local out = {1, dropped}
for k = 1, #popped, 2 do
  local id = popped[k]
  local key = job_key(id)
  redis.call('ZREM', base .. 'since', id)
  if redis.call('EXISTS', key) == 1 then
    redis.pcall('HINCRBY', key, 'attempt', 1) -- pcall: garbage stays, for the caller to report
    redis.pcall('HINCRBY', key, 'token', 1)
    redis.call('HSET', key, 'status', 'active', 'worker_id', ARGV[4], 'lease_until', lease_until)
    redis.call('ZADD', base .. 'active', lease_until, id)
    redis.call('RPUSH', receipt, id)
    local record = redis.call('HGETALL', key)
    count(field_in(record, 'task', 1), 'claimed')
    out[#out + 1] = id
    out[#out + 1] = record
  else
    dropped[#dropped + 1] = id
  end
end
if #popped > 0 then redis.call('EXPIRE', receipt, 60) end
if rate > 0 then
  redis.call('HSET', meta, 'tokens', tostring(tokens - #popped / 2), 'tokens_at', ARGV[1])
end
if ready > #popped / 2 then wake_workers() end -- chain the wake-up to the next idle worker
wake_result_waiters()
save_totals()
return out
