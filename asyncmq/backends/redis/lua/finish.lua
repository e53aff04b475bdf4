-- ARGV: now, ttl, keep, count, then per job: id, token, status, and the mutable fields in
-- MUTABLE's order ('' deletes the field). A job is stored only while it is active under
-- that token: a stale worker's outcome is refused. Returns one flag per job.
local MUTABLE = {'started_at', 'finished_at', 'delay_until', 'ready_at', 'result', 'error', 'progress'}
local now, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, i, woke, trimmed = {}, 5, false, {}
for j = 1, tonumber(ARGV[4]) do
  local id, token, status = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = job_key(id)
  if redis.call('HGET', key, 'token') == token and redis.call('ZREM', base .. 'active', id) == 1 then
    redis.call('HINCRBY', key, 'token', 1)
    local set, del = {'status', status}, {'lease_until', 'worker_id'}
    for f = 1, #MUTABLE do
      local value = ARGV[i + 2 + f]
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
    end
    out[j] = 1
  else
    out[j] = 0
  end
  i = i + 3 + #MUTABLE
end
for status in pairs(trimmed) do trim_finished(status, keep) end
if woke then wake_workers() end
return out
