-- Redis's own clock, so that workers on machines whose clocks differ agree.
-- Prepended to the scripts that use `now`.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
