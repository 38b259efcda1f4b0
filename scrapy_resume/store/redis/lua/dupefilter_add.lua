-- Adds a request's fingerprint to scrapy-redis's dupefilter set, as its SADD does.
-- KEYS: the set, the hash of each writer's last call. ARGV: fingerprint, writer, call
-- number. Returns 1 if the set had it already (a duplicate), 0 if it is new.
-- Sent again (a retry after a lost reply: see commit.lua), the call finds its number: the
-- fingerprint is its own, new, not the duplicate of itself.
local field = 'add:' .. ARGV[2]
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], field, ARGV[3])
  return 0
end
if redis.call('HGET', KEYS[2], field) == ARGV[3] then return 0 end
return 1
