-- ARGV: op ('add' or 'advance'), key, then for add: record_json, next_at; for advance:
-- expected_at, next_at. A schedule's next time lives apart from its record so the
-- compare-and-set compares the exact string the client wrote.
local records, next_at = base .. 'repeat', base .. 'repeat:next'
if ARGV[1] == 'add' then
  if redis.call('HSETNX', records, ARGV[2], ARGV[3]) == 0 then return 0 end
  redis.call('HSET', next_at, ARGV[2], ARGV[4])
  return 1
end
local current = redis.call('HGET', next_at, ARGV[2])
if current == ARGV[4] then return 1 end -- already advanced there: this call sent again, or a
                                         -- scheduler that chose the same time (the occurrence's
                                         -- id makes storing it twice store it once)
if current ~= ARGV[3] then return 0 end
redis.call('HSET', next_at, ARGV[2], ARGV[4])
return 1
