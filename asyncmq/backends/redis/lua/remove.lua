-- ARGV: id, now, ttl, keep. Deletes a job that is not active; a job that had not ended tells
-- its blocked children (`remove_job` in common.lua), failed ones kept by ttl and keep.
-- Returns {1, the records of the jobs it failed} if it deleted the job, else {0}.
local status = redis.call('HGET', job_key(ARGV[1]), 'status')
if not status or status == 'active' then return {0} end
unindex(ARGV[1], status)
remove_job(ARGV[1], status, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
wake_result_waiters()
save_totals()
return {1, cascaded}
