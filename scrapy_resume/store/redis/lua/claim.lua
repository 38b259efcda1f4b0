-- Claims the key of a request seen for the first time.
-- KEYS: meta, status, record, counts. ARGV: key, url, now.
-- Returns 1 if claimed, 0 if the key was known already.
if redis.call('HSETNX', KEYS[2], ARGV[1], '0') == 0 then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], 'next_seq', 1) - 1
local now = tonumber(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(
  {seq = seq, url = ARGV[2], attempts = 0, created_at = now, updated_at = now}))
redis.call('HINCRBY', KEYS[4], '0', 1)
return 1
