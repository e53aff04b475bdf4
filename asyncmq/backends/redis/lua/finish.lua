-- ARGV: now, ttl, keep, a JSON array of outcomes, each an array of strings
--   {id, token, status, then the value of each field named in ARGV[5] ('' deletes it)},
-- the JSON array of those field names (`asyncmq.job.OUTCOME_FIELDS`), and the JSON object of
-- the total each status adds to (`asyncmq.transitions.OUTCOME_TOTALS`).
-- A job is stored only while it is active under that token: a stale worker's outcome is
-- refused. An outcome sent again (its reply was lost) finds its own `settled_token` and is
-- reported stored, not refused. A job that ends (a finished status) with a stored `deps`
-- field ends its children's wait in this script (`end_children`). Returns {one flag per job,
-- the records of the jobs its end failed}.
local MUTABLE, TOTAL_OF = cjson.decode(ARGV[5]), cjson.decode(ARGV[6])
local now, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, woke, trimmed = {}, false, {}
for j, outcome in ipairs(cjson.decode(ARGV[4])) do
  local id, token, status = outcome[1], outcome[2], outcome[3]
  local key = job_key(id)
  local stored = redis.call('HMGET', key, 'token', 'task', 'deps')
  if stored[1] == token and redis.call('ZREM', base .. 'active', id) == 1 then
    redis.call('HINCRBY', key, 'token', 1)
    count(stored[2], TOTAL_OF[status])
    local set, del = {'status', status, 'settled_token', token}, {'lease_until', 'worker_id'}
    for f = 1, #MUTABLE do
      local value = outcome[3 + f]
      if value == '' then del[#del + 1] = MUTABLE[f] else set[#set + 1] = MUTABLE[f]; set[#set + 1] = value end
    end
    redis.call('HSET', key, unpack(set))
    redis.call('HDEL', key, unpack(del))
    if status == 'waiting' then
      push_waiting(id, redis.call('HGET', key, 'priority'), now)
      woke = true
    elseif status == 'delayed' then
      push_delayed(id, redis.call('HGET', key, 'delay_until'))
    else
      push_finished(id, status, redis.call('HGET', key, 'finished_at'), ttl)
      trimmed[status] = true
      if stored[3] then end_children(id, status, stored[3], redis.call('HGET', key, 'result'), now, ttl, keep) end
    end
    out[j] = 1
  elseif redis.call('HGET', key, 'settled_token') == token then
    out[j] = 1
  else
    out[j] = 0
  end
end
for status in pairs(trimmed) do trim_finished(status, keep) end
if woke then wake_workers() end
wake_result_waiters()
save_totals()
return {out, cascaded}
