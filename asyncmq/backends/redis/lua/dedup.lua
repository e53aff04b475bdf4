-- Stores a job unless a job holds its deduplication key (`asyncmq.deduplication`), in one step.
-- ARGV: the deduplication id, its ttl in ms ('' for none), extend (1/0), replace (1/0), and
-- the job as enqueue.lua takes each one (a JSON array: id, status, priority, when, field,
-- value, ...), then now, ttl and keep for the children the replaced holder's removal fails
-- (`remove_job`). The key is `<base>dedup:<dedup id>` (see `dedup_holder`).
-- Returns {1, id} stored, {1, id, replaced id, records of the jobs its removal failed} stored
-- in place of the delayed holder,
-- {0, holder id} a duplicate (nothing stored), {0} the job's id exists (nothing stored).
-- A duplicate adds to the queue total `deduplicated` of the job's task, a job stored in the
-- place of the delayed holder to `debounced` (and `enqueued`), in this script.
local dkey = base .. 'dedup:' .. ARGV[1]
local ttl_ms, extend, replace = tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4] == '1'
local job = cjson.decode(ARGV[5])
local id, status, priority, when = job[1], job[2], job[3], job[4]
local key = job_key(id)
local holder, held_status = dedup_holder(dkey)
if holder == id and redis.call('HGET', key, 'created_at') == field_in(job, 'created_at', 5) then
  return {1, id} -- this very store, sent again after a lost reply
end
local replaced = false
if holder then
  if not (replace and held_status == 'delayed') then
    if extend and ttl_ms then redis.call('PEXPIRE', dkey, ttl_ms) end
    count(field_in(job, 'task', 5), 'deduplicated')
    save_totals()
    return {0, holder}
  end
  replaced = holder
end
if id ~= replaced and redis.call('EXISTS', key) == 1 then return {0} end

if replaced then -- as remove.lua
  unindex(replaced, 'delayed')
  remove_job(replaced, 'delayed', ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]))
  wake_result_waiters()
end
redis.call('HSET', key, unpack(job, 5))
if status == 'delayed' then
  push_delayed(id, when)
else
  push_waiting(id, priority, when)
  wake_workers()
end
local task = field_in(job, 'task', 5)
count(task, 'enqueued')
if replaced then count(task, 'debounced') end
save_totals()

if replaced and not extend and redis.call('PTTL', dkey) > 0 then
  redis.call('SET', dkey, id, 'KEEPTTL') -- the replaced holder's expiry stays the key's
elseif ttl_ms then
  redis.call('SET', dkey, id, 'PX', ttl_ms)
else
  redis.call('SET', dkey, id)
end
if replaced then return {1, id, replaced, cascaded} end
return {1, id}
