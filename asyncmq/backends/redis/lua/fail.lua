-- ARGV: now, ttl, keep, then id, token, reason triples: claimed jobs whose records the
-- caller cannot read. Fails each still active under that token (compared as stored, garbage
-- or not), with its reason, adding to `failed`. Returns {one flag per job, the records of
-- the jobs their end failed (see `end_children`)}.
local now, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local key = job_key(id)
  local stored = redis.call('HMGET', key, 'status', 'token')
  if stored[1] == 'active' and (stored[2] or '') == ARGV[i + 1] then
    fail_garbled(id, 'active', ARGV[i + 2], now, ttl, keep)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
wake_result_waiters()
save_totals()
return {out, cascaded}
