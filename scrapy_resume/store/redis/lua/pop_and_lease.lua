-- Pops the queue's first request and leases it to a worker, in one step.
-- KEYS: meta, queue, then the lease keys (StageKeys.LEASES): lease_expiry, lease_request,
-- lease_score, lease_owner, lease_queue. ARGV: worker id, lease length (ms).
-- Returns {request, lease id}, or false when the queue is empty.
local found = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #found == 0 then return false end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, 0)
local id = tostring(redis.call('HINCRBY', KEYS[1], 'lease_seq', 1))
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[4], id, found[1])
redis.call('HSET', KEYS[5], id, found[2])
redis.call('HSET', KEYS[6], id, ARGV[1])
redis.call('HSET', KEYS[7], id, KEYS[2])
return {found[1], id}
