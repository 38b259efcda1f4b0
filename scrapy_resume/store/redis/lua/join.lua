-- Registers a worker of the stage, dropping the expired ones.
-- KEYS: workers. ARGV: worker id, lease length (ms). Returns the other live workers.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local others = {}
for _, worker in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if worker ~= ARGV[1] then table.insert(others, worker) end
end
return others
