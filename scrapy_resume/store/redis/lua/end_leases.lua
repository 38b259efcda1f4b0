-- Ends leases. KEYS: the lease keys (StageKeys.LEASES). ARGV[1]: 'expired' (every
-- expired lease), 'requeue' or 'release' (the lease ids that follow).
-- Puts the requests of those leases back in their queue (not for 'release') and deletes
-- the leases. Returns how many requests went back.
local ids = {}
if ARGV[1] == 'expired' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
else
  for i = 2, #ARGV do table.insert(ids, ARGV[i]) end
end
local requeued = 0
for _, id in ipairs(ids) do
  local request = redis.call('HGET', KEYS[2], id)
  if request and ARGV[1] ~= 'release' then
    local queue = redis.call('HGET', KEYS[5], id)
    redis.call('ZADD', queue, redis.call('HGET', KEYS[3], id), request)
    requeued = requeued + 1
  end
  redis.call('ZREM', KEYS[1], id)
  for k = 2, 5 do redis.call('HDEL', KEYS[k], id) end
end
return requeued
