-- ARGV: include_delayed (1 or 0). Deletes every waiting job, and with include_delayed every
-- delayed one too except a schedule's pending occurrence (a record with a repeat_key);
-- returns how many.
local ids = redis.call('ZRANGE', base .. 'waiting', 0, -1)
delete_jobs(ids, 'waiting')
redis.call('DEL', base .. 'waiting', base .. 'since')
local removed = #ids
if ARGV[1] == '1' then
  local gone = {}
  for _, id in ipairs(redis.call('ZRANGE', base .. 'delayed', 0, -1)) do
    if not redis.call('HGET', job_key(id), 'repeat_key') then gone[#gone + 1] = id end
  end
  delete_jobs(gone, 'delayed')
  for i = 1, #gone, 1000 do
    redis.call('ZREM', base .. 'delayed', unpack(gone, i, math.min(i + 999, #gone)))
  end
  removed = removed + #gone
end
return removed
