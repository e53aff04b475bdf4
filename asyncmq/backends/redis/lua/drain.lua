-- ARGV: include_delayed (1 or 0), now, ttl, keep. Deletes every waiting job, and with
-- include_delayed every delayed one too except a schedule's pending occurrence (a record
-- with a repeat_key); then the blocked children of the deleted jobs are told
-- (`end_children` as 'removed'), failed ones kept by ttl and keep: a child freed becomes
-- waiting or delayed after the drain. Returns {how many it deleted, the records of the jobs
-- it failed}.
local now, ttl, keep = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local parents = {} -- {id, deps text} of the deleted jobs that have children
local function parents_in(ids, status)
  for _, id in ipairs(ids) do
    local stored = redis.call('HMGET', job_key(id), 'status', 'deps')
    if stored[1] == status and stored[2] then parents[#parents + 1] = {id, stored[2]} end
  end
end
local ids = redis.call('ZRANGE', base .. 'waiting', 0, -1)
parents_in(ids, 'waiting')
delete_jobs(ids, 'waiting')
redis.call('DEL', base .. 'waiting', base .. 'since')
local removed = #ids
if ARGV[1] == '1' then
  local gone = {}
  for _, id in ipairs(redis.call('ZRANGE', base .. 'delayed', 0, -1)) do
    if not redis.call('HGET', job_key(id), 'repeat_key') then gone[#gone + 1] = id end
  end
  parents_in(gone, 'delayed')
  delete_jobs(gone, 'delayed')
  for i = 1, #gone, 1000 do
    redis.call('ZREM', base .. 'delayed', unpack(gone, i, math.min(i + 999, #gone)))
  end
  removed = removed + #gone
end
for _, parent in ipairs(parents) do end_children(parent[1], 'removed', parent[2], nil, now, ttl, keep) end
wake_result_waiters()
save_totals()
return {removed, cascaded}
