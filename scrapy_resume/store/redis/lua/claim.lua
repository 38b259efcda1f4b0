-- Claims the key of a request seen for the first time.
-- KEYS: meta, status, record, counts, applied. ARGV: key, url, now, writer, call number.
-- Returns 1 if claimed, 0 if the key was known already. A claim sent again (a retry
-- after a lost reply: see commit.lua) finds its number in `applied`: still claimed, 1.
local applied, field = KEYS[5], 'claim:' .. ARGV[4]
if redis.call('HSETNX', KEYS[2], ARGV[1], '0') == 0 then
  if redis.call('HGET', applied, field) == ARGV[5] then return 1 end
  return 0
end
local seq = redis.call('HINCRBY', KEYS[1], 'next_seq', 1) - 1
local now = tonumber(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(
  {seq = seq, url = ARGV[2], attempts = 0, created_at = now, updated_at = now}))
redis.call('HINCRBY', KEYS[4], '0', 1)
redis.call('HSET', applied, field, ARGV[5])
return 1
