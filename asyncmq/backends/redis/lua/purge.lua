-- ARGV: now, ttl, keep. Deletes finished jobs older than ttl, then all but the newest keep.
local cutoff = '(' .. tostring(tonumber(ARGV[1]) - tonumber(ARGV[2]))
local removed = 0
for _, status in ipairs({'completed', 'failed', 'expired', 'cancelled'}) do
  local old = redis.call('ZRANGEBYSCORE', base .. status, '-inf', cutoff)
  if #old > 0 then
    delete_jobs(old, status)
    redis.call('ZREMRANGEBYSCORE', base .. status, '-inf', cutoff)
    removed = removed + #old
  end
  trim_finished(status, tonumber(ARGV[3]))
end
return removed
