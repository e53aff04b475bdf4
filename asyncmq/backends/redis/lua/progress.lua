-- ARGV: id, token, progress_json. Stored only while the caller owns the job.
local key = job_key(ARGV[1])
if redis.call('HGET', key, 'token') == ARGV[2] and redis.call('HGET', key, 'status') == 'active' then
  redis.call('HSET', key, 'progress', ARGV[3])
  return 1
end
return 0
