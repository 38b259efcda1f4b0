-- Which of a worker's leases does it still hold? Renews those, and returns the others:
-- leases another worker took back after they expired (this one was paused past them).
-- KEYS: lease_expiry, lease_owner. ARGV: worker id, lease length (ms), lease ids.
local lost = {}
local expiry = now + tonumber(ARGV[2])
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, id)
  else
    table.insert(lost, id)
  end
end
return lost
