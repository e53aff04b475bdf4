-- Deletes every waiting and delayed job; returns how many.
local removed = 0
for _, status in ipairs({'waiting', 'delayed'}) do
  local ids = redis.call('ZRANGE', base .. status, 0, -1)
  delete_jobs(ids, status)
  removed = removed + #ids
end
redis.call('DEL', base .. 'waiting', base .. 'since', base .. 'delayed')
return removed
