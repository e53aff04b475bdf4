-- ARGV: transition (its wire form), id, now, ttl, keep. Applies the transition to the job
-- when its status is one of the transition's sources; returns the job, or {} if it is
-- missing or in another state, and the records of the jobs its end failed (see
-- `end_children`): {job, {record, ...}}. Sent again after a lost reply, it finds its own work
-- (the target status with its first stamped field at this `now`) and returns the job again.
local t = cjson.decode(ARGV[1])
local id, now = ARGV[2], ARGV[3]
local key = job_key(id)
local status = redis.call('HGET', key, 'status')
if not status then return {{}, {}} end
if status == t.target and t.stamp[1] and redis.call('HGET', key, t.stamp[1]) == now then
  return {redis.call('HGETALL', key), {}}
end
if not t.sources[status] then return {{}, {}} end
local garbled = garbled_field(key)
if garbled then return redis.error_reply('job record ' .. id .. ' has a malformed ' .. garbled) end
apply_transition(t, id, status, now, tonumber(ARGV[4]), tonumber(ARGV[5]))
wake_result_waiters()
save_totals()
return {redis.call('HGETALL', key), cascaded}
