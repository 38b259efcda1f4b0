-- Pops up to ARGV[3] requests off the queue's front and leases them to a worker, in one step.
-- KEYS: meta, queue, then the lease keys (StageKeys.LEASES): lease_expiry, lease_request,
-- lease_score, lease_owner, lease_queue; then applied. ARGV: worker id, lease length (ms),
-- how many, this pop's number (the worker's count of its pops).
-- Returns request, lease id, request, lease id, ...: empty when the queue is empty.
-- Once only: a pop sent again (the client retries a call whose reply it lost) returns
-- what the first one took, rather than taking more requests that nobody would fetch.
local applied, field = KEYS[8], 'pop:' .. ARGV[1]
local last = redis.call('HGET', applied, field)
if last then
  local number, ids = string.match(last, '^(%d+):(.*)$')
  if number == ARGV[4] then
    local again = {}
    for id in string.gmatch(ids, '[^,]+') do
      local request = redis.call('HGET', KEYS[4], id)
      if request then table.insert(again, request); table.insert(again, id) end
    end
    return again
  end
end
local found = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
local count = #found / 2  -- (request, score) pairs
local taken, ids = {}, {}
if count > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, count - 1)
  local first = redis.call('HINCRBY', KEYS[1], 'lease_seq', count) - count
  local expiry = now + tonumber(ARGV[2])
  for n = 1, count do
    local request, score, id = found[2 * n - 1], found[2 * n], tostring(first + n)
    redis.call('ZADD', KEYS[3], expiry, id)
    redis.call('HSET', KEYS[4], id, request)
    redis.call('HSET', KEYS[5], id, score)
    redis.call('HSET', KEYS[6], id, ARGV[1])
    redis.call('HSET', KEYS[7], id, KEYS[2])
    table.insert(taken, request); table.insert(taken, id)
    table.insert(ids, id)
  end
end
redis.call('HSET', applied, field, ARGV[4] .. ':' .. table.concat(ids, ','))
return taken
