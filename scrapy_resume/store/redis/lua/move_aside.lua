-- Moves a stage's keys to another stage's names (a reset keeps the old stage, aside), in
-- one step. KEYS: the old names, then the new ones, in the same order. Sent again (a retry
-- after a lost reply), it finds nothing left to move, and moves nothing.
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[n + i]) end
end
return n
