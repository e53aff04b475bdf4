-- ARGV: count, then per job: id, status, priority, when (ready_at or delay_until), n, n field/value pairs.
-- Returns one flag per job: 1 stored, 0 the id exists.
local out, i, woke = {}, 2, false
for j = 1, tonumber(ARGV[1]) do
  local id, status, priority, when, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local key = job_key(id)
  if redis.call('EXISTS', key) == 1 then
    out[j] = 0
  else
    redis.call('HSET', key, unpack(ARGV, i + 5, i + 4 + 2 * n))
    if status == 'delayed' then
      push_delayed(id, when)
    else
      push_waiting(id, priority, when)
      woke = true
    end
    out[j] = 1
  end
  i = i + 5 + 2 * n
end
if woke then wake_workers() end
return out
