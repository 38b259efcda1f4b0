-- Claims the key of a request seen for the first time; for a start request of a shared
-- stage, also pushes it onto scrapy-redis's queue in the same step (a worker killed
-- between a claim and its push left the request claimed, and in no queue).
-- KEYS: meta, status, record, counts, applied[, the queue, scrapy-redis's dupefilter set].
-- ARGV: key, url, now, writer, call number[, score, the encoded request, its fingerprint
-- for the dupefilter ('' for a dont_filter request, whose fingerprint is not added)].
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
if KEYS[6] then
  -- a fingerprint already there: a link to the same page was queued since the
  -- dupefilter was asked; that copy settles this key, so this one is not pushed
  if ARGV[8] ~= '' and redis.call('SADD', KEYS[7], ARGV[8]) == 0 then return 1 end
  redis.call('ZADD', KEYS[6], ARGV[6], ARGV[7])
end
return 1
