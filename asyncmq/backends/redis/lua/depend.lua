-- ARGV: now, then a JSON array of jobs, each {queue, then as enqueue.lua takes it}: a call
-- that holds a job with parents (`deps`), stored in this one script whichever queues it
-- spans (a flow). Every parent must exist or come earlier in the call: checked before any
-- write, so a missing one stores nothing and returns {0, child id, parent queue, parent id}.
-- Else returns {1, one flag per job (as enqueue.lua's), records of the jobs failed at once}.
-- A child is resolved by the parents that have ended (`resolve`), recorded in the `children`
-- of each other parent, and stored blocked (in `<base>blocked`, scored by its add), waiting,
-- delayed or failed. One failed at its add is kept as long as the parent that failed it.
local now = ARGV[1]
local jobs = cjson.decode(ARGV[2])
local home = base

local earlier = {}
for _, job in ipairs(jobs) do
  local deps = field_in(job, 'deps', 6)
  deps = deps and decode_deps(deps)
  for _, reference in ipairs(deps and type(deps.parents) == 'table' and deps.parents or {}) do
    if not earlier[reference] then
      local queue, id = split_ref(reference)
      if redis.call('EXISTS', base_of(queue) .. 'job:' .. id) == 0 then return {0, job[2], queue, id} end
    end
  end
  earlier[job[1] .. '/' .. job[2]] = true
end

-- Applies the parents' states to a new child's decoded `deps`, and records it on each parent
-- it still waits for. Returns the parent that failed it (reference and status), if any.
local function depend(child, deps)
  for _, reference in ipairs(deps.pending) do
    local queue, id = split_ref(reference)
    local key = base_of(queue) .. 'job:' .. id
    local parent = redis.call('HMGET', key, 'status', 'result', 'deps')
    if resolve(deps, reference, id, parent[1], parent[2]) == 'fail' then
      return reference, parent[1], key
    end
    if holds(deps.pending, reference) then
      local parent_deps = parent[3] and decode_deps(parent[3]) or {}
      if type(parent_deps.children) ~= 'table' then parent_deps.children = {} end
      if not holds(parent_deps.children, child) then
        parent_deps.children[#parent_deps.children + 1] = child
        redis.call('HSET', key, 'deps', encode_deps(parent_deps))
      end
    end
  end
  return nil
end

local out, failed = {}, {}
for j, job in ipairs(jobs) do
  base = base_of(job[1])
  local id, status, priority, when = job[2], job[3], job[4], job[5]
  local key = job_key(id)
  local deps = field_in(job, 'deps', 6)
  if redis.call('EXISTS', key) == 1 then
    local created_at = field_in(job, 'created_at', 6) -- this very store, sent again after a lost reply
    out[j] = created_at ~= nil and redis.call('HGET', key, 'created_at') == created_at and 1 or 0
  else
    redis.call('HSET', key, unpack(job, 6))
    local task = field_in(job, 'task', 6)
    count(task, 'enqueued')
    deps = deps and decode_deps(deps)
    if deps and type(deps.pending) == 'table' then
      local parent, parent_status, parent_key = depend(job[1] .. '/' .. id, deps)
      redis.call('HSET', key, 'deps', encode_deps(deps))
      if parent then
        local ttl = math.max(redis.call('TTL', parent_key), 1)
        fail_by_parent(id, parent, parent_status, now, ttl)
        failed[#failed + 1] = redis.call('HGETALL', key)
      elseif #deps.pending > 0 then
        redis.call('ZADD', base .. 'blocked', now, id)
      else
        release_child(id, now)
      end
    elseif status == 'delayed' then
      push_delayed(id, when)
    else
      push_waiting(id, priority, when)
      wake_workers()
    end
    out[j] = 1
  end
end
base = home
wake_result_waiters()
save_totals()
return {1, out, failed}
