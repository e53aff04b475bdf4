-- ARGV: id. Deletes a job that is not active; returns 1 if it did.
local status = redis.call('HGET', job_key(ARGV[1]), 'status')
if not status or status == 'active' then return 0 end
unindex(ARGV[1], status)
redis.call('DEL', job_key(ARGV[1]))
return 1
