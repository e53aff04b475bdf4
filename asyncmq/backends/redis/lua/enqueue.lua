-- ARGV[1]: a JSON array of jobs, each an array of strings:
--   {id, status, priority, when (ready_at or delay_until), field, value, field, value, ...}
-- One JSON argument instead of thousands keeps the client's command packing cheap.
-- Returns one flag per job: 1 stored, 0 the id exists.
-- The stored job is this one (not an older job with the same id) when its creation time matches.
local function same_job(key, job)
  for f = 5, #job - 1, 2 do
    if job[f] == 'created_at' then return redis.call('HGET', key, 'created_at') == job[f + 1] end
  end
  return false
end

local out, woke = {}, false
for j, job in ipairs(cjson.decode(ARGV[1])) do
  local id, status, priority, when = job[1], job[2], job[3], job[4]
  local key = job_key(id)
  if redis.call('EXISTS', key) == 1 then
    out[j] = same_job(key, job) and 1 or 0 -- 1: this very store, sent again after a lost reply
  else
    redis.call('HSET', key, unpack(job, 5))
    if status == 'delayed' then
      push_delayed(id, when)
    else
      push_waiting(id, priority, when)
      woke = true
    end
    out[j] = 1
  end
end
if woke then wake_workers() end
return out
