-- Renews a worker's membership and every lease it holds.
-- KEYS: workers, lease_expiry. ARGV: worker id, lease length (ms), the worker's lease ids.
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
for i = 3, #ARGV do redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[i]) end
