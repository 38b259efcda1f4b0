-- Starts a run: its number, its record, the stage's count of runs.
-- KEYS: meta, runs, counters, applied. ARGV: writer, call number, the run's record (JSON).
-- Sent again (a retry after a lost reply: see commit.lua), it finds its call number in
-- `applied` and returns the run it started, writing nothing again.
local applied, field = KEYS[4], 'run:' .. ARGV[1]
local last = redis.call('HGET', applied, field)
if last then
  local call, run_id = string.match(last, '^(%d+):(%d+)$')
  if call == ARGV[2] then return tonumber(run_id) end
end
local run_id = redis.call('HINCRBY', KEYS[1], 'run_seq', 1)
redis.call('HSET', KEYS[2], run_id, ARGV[3])
redis.call('HINCRBY', KEYS[3], 'runs', 1)
redis.call('HSET', applied, field, ARGV[2] .. ':' .. run_id)
return run_id
