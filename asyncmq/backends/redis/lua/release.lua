-- ARGV: transition (its wire form: the release), now, then id, token pairs. Applies it to
-- each job still active under that token: a worker hands back what it claimed. A release
-- names no totals; any other transition's are added. Returns the records of the jobs its
-- end failed, for a transition that ends them (see `end_children`).
local t = cjson.decode(ARGV[1])
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local key = job_key(id)
  if redis.call('HGET', key, 'token') == ARGV[i + 1] and redis.call('HGET', key, 'status') == 'active'
    and not garbled_field(key) then -- else left to stall, and recovery fails it
    apply_transition(t, id, 'active', ARGV[2], 1, 0)
  end
end
wake_result_waiters()
save_totals()
return cascaded
