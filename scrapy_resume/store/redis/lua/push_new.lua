-- Pushes a new request onto scrapy-redis's priority queue and adds its fingerprint to the
-- dupefilter's set, in one step (scrapy-redis does them one after the other: a worker
-- killed in between left the fingerprint "seen" and the request nowhere).
-- KEYS: the dupefilter's set, the queue. ARGV: fingerprint, score, the encoded request.
-- Returns 1 if pushed; 0 if the set had the fingerprint (another worker pushed it since
-- this one asked, or this very call ran before: a retry after a lost reply).
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
