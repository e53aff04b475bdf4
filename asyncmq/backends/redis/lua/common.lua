-- Shared by every script (prepended). KEYS[1] is the queue's base key, "<prefix>:{<queue>}:":
-- the hash tag puts every key of a queue in one cluster slot, so scripts may derive them.
-- `base` is the queue a function works on: only a dependency's move reassigns it, on a
-- single server, to reach a job of another queue (see `base_of`).
local base = KEYS[1]
local PRIORITY_SPAN = 1099511627776 -- 2^40: claim order is priority, then arrival (seq)

local function job_key(id) return base .. 'job:' .. id end

-- Queue totals (`asyncmq.transitions.TOTALS`): the hash `<base>totals`, field
-- "<total>:<task>", added to by the script that makes the move it counts. `count` gathers a
-- script's additions (by queue) and `save_totals`, called once before the script returns,
-- writes one HINCRBY per field: a batch of a hundred jobs of one task costs one write, not a
-- hundred.
local added = {}

local function count(task, total)
  local field = total .. ':' .. (task or '?')
  local mine = added[base]
  if not mine then
    mine = {}
    added[base] = mine
  end
  mine[field] = (mine[field] or 0) + 1
end

-- The value of field `name` in a flat field/value list from index `first` on, or nil: a
-- record already read (or about to be written) needs no second read for its task.
local function field_in(flat, name, first)
  for f = first, #flat - 1, 2 do
    if flat[f] == name then return flat[f + 1] end
  end
  return nil
end

local function save_totals()
  for queue_base, fields in pairs(added) do
    for field, n in pairs(fields) do redis.call('HINCRBY', queue_base .. 'totals', field, n) end
  end
end

local function wake_workers()
  redis.call('LPUSH', base .. 'notify', '1')
  redis.call('LTRIM', base .. 'notify', 0, 0)
end

local function wake_scheduler_if_sooner(due)
  local first = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')[2]
  if not first or tonumber(due) < tonumber(first) then
    redis.call('LPUSH', base .. 'schedule', '1')
    redis.call('LTRIM', base .. 'schedule', 0, 0)
  end
end

-- A garbage priority or time (a record changed by hand) files the job first in line, or due
-- now, where its claim fails it with the reason: a script failing part way would leave it in
-- no index.
local function push_waiting(id, priority, ready_at)
  local seq = redis.call('INCR', base .. 'seq')
  redis.call('ZADD', base .. 'waiting', (tonumber(priority) or 0) * PRIORITY_SPAN + seq, id)
  redis.call('ZADD', base .. 'since', tonumber(ready_at) or 0, id)
end

local function push_delayed(id, due)
  due = tonumber(due) or 0
  wake_scheduler_if_sooner(due)
  redis.call('ZADD', base .. 'delayed', due, id)
end

-- `Queue.result` waiters (watch.lua registers them): `<base>waits:<id>` is the set of the
-- processes waiting for job <id>, `<base>waits` a flag that any process waits at all, so a
-- script that ends jobs while nobody waits checks one key, once. When a job ends, each of its
-- waiting processes gets the id on its own list, `<base>ended:<process>`, which one blocking
-- pop of that process reads for every waiter it has on the queue. `ended_in` holds the
-- queue of each (a parent's end may end children in another queue).
local ended, ended_in = {}, {}

local function job_ended(id)
  ended[#ended + 1] = id
  ended_in[#ended] = base
end

local function wake_result_waiters()
  local waits = {} -- by queue: whether anyone waits there
  for i, id in ipairs(ended) do
    local queue_base = ended_in[i]
    if waits[queue_base] == nil then waits[queue_base] = redis.call('EXISTS', queue_base .. 'waits') == 1 end
    if waits[queue_base] then
      local key = queue_base .. 'waits:' .. id
      local clients = redis.call('SMEMBERS', key)
      if #clients > 0 then
        redis.call('DEL', key)
        for _, client in ipairs(clients) do
          local list = queue_base .. 'ended:' .. client
          redis.call('RPUSH', list, id)
          redis.call('EXPIRE', list, 3600)
        end
      end
    end
  end
end

-- Scored by the end of the job's retention, when its record expires: counts read from now on
-- (ZCOUNT) leave out records already gone, before any purge runs.
local function push_finished(id, status, finished_at, ttl)
  job_ended(id)
  redis.call('ZADD', base .. status, tonumber(finished_at) + ttl, id)
  redis.call('EXPIRE', job_key(id), ttl)
end

local FINISHED_STATUS = {completed = true, failed = true, expired = true, cancelled = true}

-- Removes a job from the index of its current status.
local function unindex(id, status)
  if status == 'waiting' then
    redis.call('ZREM', base .. 'waiting', id)
    redis.call('ZREM', base .. 'since', id)
  else
    redis.call('ZREM', base .. status, id)
  end
end

-- Deletes the records of `ids` still in `status`: an id can outlive its record in an index
-- (a finished record expires before the purge), and a new job may have taken the id since.
local function delete_jobs(ids, status)
  local keys = {}
  for _, id in ipairs(ids) do
    if redis.call('HGET', job_key(id), 'status') == status then keys[#keys + 1] = job_key(id) end
    if #keys == 1000 then redis.call('DEL', unpack(keys)); keys = {} end
  end
  if #keys > 0 then redis.call('DEL', unpack(keys)) end
end

-- Keeps the newest `keep` jobs of a finished status; deletes the rest.
local function trim_finished(status, keep)
  local extra = redis.call('ZCARD', base .. status) - keep
  if extra > 0 then
    delete_jobs(redis.call('ZRANGE', base .. status, 0, extra - 1), status)
    redis.call('ZREMRANGEBYRANK', base .. status, 0, extra - 1)
  end
end

-- Files a job under the index of `status`, the state it has just entered.
local function file_job(id, status, now, ttl, keep)
  local key = job_key(id)
  if status == 'waiting' then
    push_waiting(id, redis.call('HGET', key, 'priority'), redis.call('HGET', key, 'ready_at') or now)
    wake_workers()
  elseif status == 'delayed' then
    push_delayed(id, redis.call('HGET', key, 'delay_until'))
  elseif status == 'active' then
    return redis.error_reply('a transition cannot make a job active')
  else
    push_finished(id, status, redis.call('HGET', key, 'finished_at') or now, ttl)
    trim_finished(status, keep)
  end
end

-- Dependencies (`asyncmq.dependencies`). A job's `deps` field is JSON: `parents`, `pending`
-- and `children` (lists of "<queue>/<id>" references), `policy`, and `results` (the parents'
-- results by id). The lists and the policy are read with cjson; `results` is kept as text and
-- never decoded, since cjson would turn an empty list into an object and round numbers. The
-- field is written with `results` last (`asyncmq.dependencies.new_deps` makes it so, and
-- `encode_deps`), so the first '"results":' in it is that key: the text before it holds only
-- strings, in which a quote is escaped.
local prefix

-- The base of another queue: this one's with the queue in the hash tag changed (a queue name
-- holds no brace). On a cluster a script reaches only its own queue's slot: the backend
-- refuses a dependency across queues there, so this then always names the same queue.
local function base_of(queue)
  prefix = prefix or string.match(KEYS[1], '^(.*):{[^{]*}:$')
  return prefix .. ':{' .. queue .. '}:'
end

local function queue_of(queue_base) return string.match(queue_base, '{([^{}]*)}:$') end

local function split_ref(reference)
  local slash = string.find(reference, '/', 1, true)
  return string.sub(reference, 1, slash - 1), string.sub(reference, slash + 1)
end

-- The `deps` text decoded, `results` as text; nil for a field that is no JSON object.
local function decode_deps(text)
  local ok, deps = pcall(cjson.decode, text)
  if not ok or type(deps) ~= 'table' then return nil end
  local at = string.find(text, '"results":', 1, true)
  deps.results = at and string.sub(text, at + 10, -2) or nil
  return deps
end

local function encode_list(list)
  local parts = {}
  for i, item in ipairs(list) do parts[i] = cjson.encode(item) end
  return '[' .. table.concat(parts, ',') .. ']'
end

local function encode_deps(deps)
  local parts = {}
  for _, name in ipairs({'parents', 'pending', 'children'}) do
    if deps[name] then parts[#parts + 1] = '"' .. name .. '":' .. encode_list(deps[name]) end
  end
  if deps.policy then parts[#parts + 1] = '"policy":' .. cjson.encode(deps.policy) end
  if deps.results then parts[#parts + 1] = '"results":' .. deps.results end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function holds(list, item)
  for _, value in ipairs(list) do
    if value == item then return true end
  end
  return false
end

local function without(list, item)
  local kept = {}
  for _, value in ipairs(list) do
    if value ~= item then kept[#kept + 1] = value end
  end
  return kept
end

-- `asyncmq.dependencies.parent_ended` on a blocked child's decoded deps: parent `reference`
-- (id `parent_id`) is in `status`, with `result` (JSON text) if it completed; status 'removed'
-- is `parent_removed`, a parent deleted before it ended. Returns 'fail' when the child fails
-- by it, 'resolved' when the parent left `pending` (its result copied in), or nil when the
-- child keeps waiting for it.
local function resolve(deps, reference, parent_id, status, result)
  if not (FINISHED_STATUS[status] or status == 'removed') or type(deps.pending) ~= 'table'
    or not holds(deps.pending, reference) then
    return nil
  end
  if status ~= 'completed' then
    if deps.policy == 'wait' then return nil end
    if deps.policy == 'fail' then return 'fail' end
  end
  deps.pending = without(deps.pending, reference)
  if status == 'completed' then
    local entry = cjson.encode(parent_id) .. ':' .. (result or 'null')
    if not deps.results or deps.results == '{}' then
      deps.results = '{' .. entry .. '}'
    else
      deps.results = string.sub(deps.results, 1, -2) .. ',' .. entry .. '}'
    end
  end
  return 'resolved'
end

-- Fails job `id` of the current queue, not yet in any index, because parent `reference`
-- ended `status`, or was 'removed' (ParentFailedError, as `asyncmq.dependencies` words it).
local function fail_by_parent(id, reference, status, now, ttl)
  local parent_queue, parent_id = split_ref(reference)
  local how = status == 'removed' and 'was removed' or 'ended ' .. status
  local message = 'parent job ' .. parent_id .. " of queue '" .. parent_queue .. "' " .. how
  local error = cjson.encode({type = 'ParentFailedError', message = message})
  local key = job_key(id)
  redis.call('HSET', key, 'status', 'failed', 'finished_at', now, 'error', error)
  count(redis.call('HGET', key, 'task'), 'failed')
  push_finished(id, 'failed', now, ttl)
end

-- Files job `id` of the current queue, whose parents are all resolved: waiting (ready now,
-- workers woken) or, while its own delay is ahead, delayed (the scheduler woken if sooner).
local function release_child(id, now)
  local key = job_key(id)
  local due = tonumber(redis.call('HGET', key, 'delay_until'))
  if due and due > tonumber(now) then
    redis.call('HSET', key, 'status', 'delayed')
    push_delayed(id, due)
  else
    redis.call('HSET', key, 'status', 'waiting', 'ready_at', now)
    push_waiting(id, redis.call('HGET', key, 'priority'), now)
    wake_workers()
  end
end

-- The jobs failed by a parent's end in this script, each its flat record: the caller emits
-- their job:failed events.
local cascaded = {}

-- Applies the end of job `id` of the current queue (in finished `status`, or 'removed' for a
-- job deleted before it ended, with the stored `deps` text it had and, completed, its
-- `result`) to its children, in this script: each
-- blocked child waiting for it is resolved (released once nothing is pending), failed, or
-- left, by its policy. A failed child's own children follow, through a work list: a job joins
-- it only as it leaves `blocked`, so the loop ends after at most one pass per blocked job.
-- Only jobs that have a `deps` field reach here: a job without one pays nothing.
local function end_children(id, status, deps_text, result, now, ttl, keep)
  local home, trims = base, {}
  local work, next_item = {{base, id, status, deps_text, result}}, 1
  while next_item <= #work do
    local parent_base, parent_id, parent_status, parent_deps, parent_result = unpack(work[next_item])
    next_item = next_item + 1
    local deps = decode_deps(parent_deps)
    local reference = queue_of(parent_base) .. '/' .. parent_id
    for _, child in ipairs(deps and type(deps.children) == 'table' and deps.children or {}) do
      local child_queue, child_id = split_ref(child)
      base = base_of(child_queue)
      local key = job_key(child_id)
      local stored = redis.call('HMGET', key, 'status', 'deps')
      local child_deps = stored[1] == 'blocked' and stored[2] and decode_deps(stored[2])
      local outcome = child_deps and resolve(child_deps, reference, parent_id, parent_status, parent_result)
      if outcome == 'fail' then
        redis.call('ZREM', base .. 'blocked', child_id)
        fail_by_parent(child_id, reference, parent_status, now, ttl)
        cascaded[#cascaded + 1] = redis.call('HGETALL', key)
        trims[base] = true
        work[#work + 1] = {base, child_id, 'failed', stored[2], nil}
      elseif outcome == 'resolved' then
        redis.call('HSET', key, 'deps', encode_deps(child_deps))
        if #child_deps.pending == 0 then
          redis.call('ZREM', base .. 'blocked', child_id)
          release_child(child_id, now)
        end
      end
    end
  end
  for queue_base in pairs(trims) do
    base = queue_base
    trim_finished('failed', keep)
  end
  base = home
end

-- Deletes the record of job `id` (already out of its index) that was in `status`: its result
-- waiters are told it is gone, and, unless it had ended, its blocked children (`end_children`
-- as 'removed'), failed ones kept by `ttl` and `keep`.
local function remove_job(id, status, now, ttl, keep)
  local key = job_key(id)
  local deps = not FINISHED_STATUS[status] and redis.call('HGET', key, 'deps')
  redis.call('DEL', key)
  job_ended(id)
  if deps then end_children(id, 'removed', deps, nil, now, ttl, keep) end
end

-- The first field a transition or a recovery reads as a number that holds something else
-- (a record changed by hand), or nil: checked before any write, since a script that fails
-- part way keeps the writes it made (a job out of its index, lost).
local NUMBERS = {'token', 'attempt', 'stalls', 'priority', 'ready_at', 'delay_until', 'finished_at'}
local function garbled_field(key)
  local values = redis.call('HMGET', key, unpack(NUMBERS))
  for i, name in ipairs(NUMBERS) do
    local value = values[i]
    if value and not tonumber(value) then return name end
    if value and i <= 4 and not string.match(value, '^%-?%d+$') then return name end
  end
  return nil
end

-- Fails a job no worker can read, at `now`, with the reason; its other fields stay as stored.
local function fail_garbled(id, status, reason, now, ttl, keep)
  local key = job_key(id)
  unindex(id, status)
  redis.pcall('HINCRBY', key, 'token', 1) -- a garbage token stays as it is
  local error = cjson.encode({type = 'MalformedJobError', message = reason})
  redis.call('HSET', key, 'status', 'failed', 'finished_at', now, 'error', error)
  redis.call('HDEL', key, 'lease_until', 'worker_id')
  count(redis.call('HGET', key, 'task'), 'failed') -- before the trim, which may delete the record
  push_finished(id, 'failed', now, ttl)
  local deps = redis.call('HGET', key, 'deps')
  if deps then end_children(id, 'failed', deps, nil, now, ttl, keep) end
  trim_finished('failed', keep)
end

-- Applies a transition the engine decided (`asyncmq.transitions`, decoded from its wire
-- form) to a job now in `status`, one of the transition's sources: out of its index, its
-- fields changed, its token bumped, into the index of the target state.
local function apply_transition(t, id, status, now, ttl, keep)
  local key = job_key(id)
  unindex(id, status)
  redis.call('PERSIST', key) -- a finished job's record expires; any other's must not
  for name, delta in pairs(t.add) do redis.call('HINCRBY', key, name, delta) end
  redis.call('HINCRBY', key, 'token', 1)
  if #t.clear > 0 then redis.call('HDEL', key, unpack(t.clear)) end
  local set = {'status', t.target}
  for name, value in pairs(t.assign) do set[#set + 1] = name; set[#set + 1] = value end
  for _, name in ipairs(t.stamp) do set[#set + 1] = name; set[#set + 1] = now end
  redis.call('HSET', key, unpack(set))
  if #t.totals > 0 then -- before filing it, whose trim may delete the record
    local task = redis.call('HGET', key, 'task')
    for _, total in ipairs(t.totals) do count(task, total) end
  end
  if not FINISHED_STATUS[t.target] then
    file_job(id, t.target, now, ttl, keep)
    return
  end
  local ending = redis.call('HMGET', key, 'deps', 'result') -- before the trim, which may delete it
  file_job(id, t.target, now, ttl, keep)
  if ending[1] then end_children(id, t.target, ending[1], ending[2], now, ttl, keep) end
end

-- Deduplication keys (dedup.lua): `<base>dedup:<dedup id>` holds the id of the job holding
-- it. With a ttl Redis expires it; without one it is held while that job is stored and not
-- finished. Returns the holder's id (or false) and the holder's status (or false).
local function dedup_holder(dkey)
  local holder = redis.call('GET', dkey)
  if not holder then return false, false end
  local status = redis.call('HGET', job_key(holder), 'status')
  if redis.call('PTTL', dkey) < 0 and (not status or FINISHED_STATUS[status]) then return false, status end
  return holder, status
end
