-- One commit, all or nothing: new pending requests, settlements, counters, cursors,
-- feed offsets, state, and the leases it releases.
-- KEYS: meta, status, record, frontier, blobs, counts, counters, cursors, feeds,
-- feed_starts, state, the lease keys (StageKeys.LEASES), applied, progress, runs.
-- ARGV[1]: a JSON header (counts and maps), then 3 values per new request and 9 per
-- settlement (see RedisStore.commit).
-- Fencing: if a settlement's shared-queue lease is no longer this worker's (h.worker),
-- the whole commit is called off, nothing written; the result's 2nd is how many.
-- Once only: a commit sent again (the client retries a call whose reply it lost when the
-- connection dropped, e.g. a Redis restart) finds its number (h.commit) in `applied`, the
-- last commit of its writer (h.writer), and writes nothing again.
-- A record is a JSON object (RECORD_FIELDS in store.py); an empty field is left out.
local function decode_record(raw)
  local rec = cjson.decode(raw)
  if rec[1] ~= nil then  -- layout 1: the same fields by position, false for empty
    local function field(v) if v == false then return nil end return v end
    rec = {seq = rec[1], url = rec[2], http_status = field(rec[3]), error = field(rec[4]),
           attempts = rec[5], created_at = rec[6], updated_at = rec[7], info = field(rec[8])}
  end
  return rec
end
local function nonempty(value) if value == '' then return nil end return value end

local h = cjson.decode(ARGV[1])
local applied, applied_field = KEYS[17], 'commit:' .. h.writer
if redis.call('HGET', applied, applied_field) == tostring(h.commit) then return {0, 0} end
-- the fence first: if any lease is no longer this worker's, nothing is written
local fenced = 0
for n = 1, h.n_settle do
  local lease = ARGV[2 + 3 * h.n_new + 9 * (n - 1) + 8]
  if lease ~= '' and redis.call('HGET', KEYS[15], lease) ~= h.worker then
    fenced = fenced + 1
  end
end
if fenced > 0 then return {0, fenced} end
local meta, status, record = KEYS[1], KEYS[2], KEYS[3]
local frontier, blobs, counts = KEYS[4], KEYS[5], KEYS[6]
local now = h.now
local seq = tonumber(redis.call('HGET', meta, 'next_seq') or '1')
local i = 2
for n = 1, h.n_new do
  local key, url, blob = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  if redis.call('HSETNX', status, key, '0') == 1 then
    redis.call('HSET', record, key, cjson.encode(
      {seq = seq, url = url, attempts = 0, created_at = now, updated_at = now}))
    redis.call('HINCRBY', counts, '0', 1)
    if blob ~= '' then
      redis.call('ZADD', frontier, seq, key)
      redis.call('HSET', blobs, key, blob)
    end
    seq = seq + 1
  end
end
for n = 1, h.n_settle do
  local key, st, url, http = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local err, attempts, info, blob = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  i = i + 9  -- (the 9th: the lease, checked above)
  local old = redis.call('HGET', status, key)
  local rec
  if old then
    rec = decode_record(redis.call('HGET', record, key))
    rec.attempts = rec.attempts + tonumber(attempts)
    if old ~= st then
      redis.call('HINCRBY', counts, old, -1)
      redis.call('HINCRBY', counts, st, 1)
    end
  else
    rec = {seq = seq, url = url, attempts = tonumber(attempts), created_at = now}
    seq = seq + 1
    redis.call('HINCRBY', counts, st, 1)
  end
  if http == '' then rec.http_status = nil else rec.http_status = tonumber(http) end
  rec.error = nonempty(err)
  rec.info = nonempty(info)
  rec.updated_at = now
  redis.call('HSET', status, key, st)
  redis.call('HSET', record, key, cjson.encode(rec))
  if st == '2' then
    if blob ~= '' then
      redis.call('HSET', blobs, key, blob)
      redis.call('ZADD', frontier, rec.seq, key)
    end
  else
    redis.call('HDEL', blobs, key)
    redis.call('ZREM', frontier, key)
  end
end
for name, delta in pairs(h.counters) do redis.call('HINCRBY', KEYS[7], name, delta) end
for name, value in pairs(h.cursors) do redis.call('HSET', KEYS[8], name, value) end
for path, offset in pairs(h.feeds) do redis.call('HSET', KEYS[9], path, offset) end
for path, start in pairs(h.feed_starts) do redis.call('HSET', KEYS[10], path, start) end
for name, value in pairs(h.state) do redis.call('HSET', KEYS[11], name, value) end
for _, lease in ipairs(h.release) do
  redis.call('ZREM', KEYS[12], lease)
  for k = 13, 16 do redis.call('HDEL', KEYS[k], lease) end
end
redis.call('HSET', applied, applied_field, h.commit)
if h.progress then  -- a sample of the stage's counts, for the report's charts
  local function count(st) return tonumber(redis.call('HGET', counts, st) or '0') end
  redis.call('RPUSH', KEYS[18], cjson.encode({
    at = tonumber(h.updated_at), run = redis.call('HLEN', KEYS[19]), done = count('1'),
    failed = count('2'), dropped = count('3'), pending = count('0'),
    items = tonumber(redis.call('HGET', KEYS[7], 'items') or '0')}))
end
redis.call('HSET', meta, 'next_seq', seq, 'updated_at', h.updated_at,
  'schema_version', h.schema_version)
return {seq, 0}
