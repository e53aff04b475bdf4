-- ARGV: cutoff, keep. Deletes finished jobs scored below the cutoff (their score is when their
-- record expires: see push_finished), then all but the newest keep.
local cutoff = '(' .. ARGV[1]
local removed = 0
for _, status in ipairs({'completed', 'failed', 'expired', 'cancelled'}) do
  local old = redis.call('ZRANGEBYSCORE', base .. status, '-inf', cutoff)
  if #old > 0 then
    delete_jobs(old, status)
    redis.call('ZREMRANGEBYSCORE', base .. status, '-inf', cutoff)
    removed = removed + #old
  end
  trim_finished(status, tonumber(ARGV[2]))
end
return removed
