-- ARGV[1]: a JSON array of jobs, each an array of strings:
--   {id, status, priority, when (ready_at or delay_until), field, value, field, value, ...}
-- One JSON argument instead of thousands keeps the client's command packing cheap.
-- Returns one flag per job: 1 stored, 0 the id exists. Each job stored adds to `enqueued`.
-- The stored job is this one (not an older job with the same id) when its creation time matches.
local function same_job(key, job)
  local created_at = field_in(job, 'created_at', 5)
  return created_at ~= nil and redis.call('HGET', key, 'created_at') == created_at
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
    count(field_in(job, 'task', 5), 'enqueued')
    out[j] = 1
  end
end
if woke then wake_workers() end
save_totals()
return out
