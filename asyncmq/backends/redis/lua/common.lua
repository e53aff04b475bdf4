-- Shared by every script (prepended). KEYS[1] is the queue's base key, "<prefix>:{<queue>}:":
-- the hash tag puts every key of a queue in one cluster slot, so scripts may derive them.
local base = KEYS[1]
local PRIORITY_SPAN = 1099511627776 -- 2^40: claim order is priority, then arrival (seq)

local function job_key(id) return base .. 'job:' .. id end

-- Queue totals (`asyncmq.transitions.TOTALS`): the hash `<base>totals`, field
-- "<total>:<task>", added to by the script that makes the move it counts. `count` gathers a
-- script's additions and `save_totals`, called once before the script returns, writes one
-- HINCRBY per field: a batch of a hundred jobs of one task costs one write, not a hundred.
local added = {}

local function count(task, total)
  local field = total .. ':' .. (task or '?')
  added[field] = (added[field] or 0) + 1
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
  for field, n in pairs(added) do redis.call('HINCRBY', base .. 'totals', field, n) end
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
-- pop of that process reads for every waiter it has on the queue.
local ended = {}

local function wake_result_waiters()
  if #ended == 0 or redis.call('EXISTS', base .. 'waits') == 0 then return end
  for _, id in ipairs(ended) do
    local key = base .. 'waits:' .. id
    local clients = redis.call('SMEMBERS', key)
    if #clients > 0 then
      redis.call('DEL', key)
      for _, client in ipairs(clients) do
        local list = base .. 'ended:' .. client
        redis.call('RPUSH', list, id)
        redis.call('EXPIRE', list, 3600)
      end
    end
  end
end

-- Scored by the end of the job's retention, when its record expires: counts read from now on
-- (ZCOUNT) leave out records already gone, before any purge runs.
local function push_finished(id, status, finished_at, ttl)
  ended[#ended + 1] = id
  redis.call('ZADD', base .. status, tonumber(finished_at) + ttl, id)
  redis.call('EXPIRE', job_key(id), ttl)
end

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
  file_job(id, t.target, now, ttl, keep)
end

-- Deduplication keys (dedup.lua): `<base>dedup:<dedup id>` holds the id of the job holding
-- it. With a ttl Redis expires it; without one it is held while that job is stored and not
-- finished. Returns the holder's id (or false) and the holder's status (or false).
local FINISHED_STATUS = {completed = true, failed = true, expired = true, cancelled = true}

local function dedup_holder(dkey)
  local holder = redis.call('GET', dkey)
  if not holder then return false, false end
  local status = redis.call('HGET', job_key(holder), 'status')
  if redis.call('PTTL', dkey) < 0 and (not status or FINISHED_STATUS[status]) then return false, status end
  return holder, status
end
