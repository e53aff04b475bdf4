-- ARGV: requeue, fail (transitions, their wire form), max_stalls, now, limit, ttl, keep,
-- recovery_id. Takes back active jobs whose lease ended: each by `requeue`, or by `fail`
-- when this stall is past max_stalls (adding to the totals the transition names), or failed
-- with the reason when a counter it reads is garbage (adding to `failed` only). Returns
-- {{ids dropped}, {records of the jobs their end failed}, id, job, id, job, ...}, dropped:
-- ids whose record is gone (see `end_children` for the others). A recovery sent
-- again (its reply was lost with a dropped connection) returns the jobs the first one took
-- back, so their job:stalled events are not lost.
local receipt = base .. 'recovery:' .. ARGV[8]
local done = redis.call('LRANGE', receipt, 0, -1)
if #done > 0 then
  local again = {{}, {}}
  for _, id in ipairs(done) do
    again[#again + 1] = id
    again[#again + 1] = redis.call('HGETALL', job_key(id))
  end
  return again
end
local requeue, fail, max_stalls = cjson.decode(ARGV[1]), cjson.decode(ARGV[2]), tonumber(ARGV[3])
local now, ttl, keep = ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7])
local ids = redis.call('ZRANGEBYSCORE', base .. 'active', '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[5]))
local dropped = {}
local out = {dropped, cascaded}
for _, id in ipairs(ids) do
  local key = job_key(id)
  if redis.call('HGET', key, 'status') == 'active' then
    local garbled = garbled_field(key)
    if garbled then
      fail_garbled(id, 'active', 'job record ' .. id .. ' has a malformed ' .. garbled, now, ttl, keep)
    else
      local stalls = tonumber(redis.call('HGET', key, 'stalls') or '0')
      apply_transition(stalls + 1 > max_stalls and fail or requeue, id, 'active', now, ttl, keep)
    end
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGETALL', key)
    redis.call('RPUSH', receipt, id)
  else -- an index entry that lost its record (or a record no longer active): dropped
    redis.call('ZREM', base .. 'active', id)
    if redis.call('EXISTS', key) == 0 then dropped[#dropped + 1] = id end
  end
end
if #out > 2 then redis.call('EXPIRE', receipt, 60) end
wake_result_waiters()
save_totals()
return out
