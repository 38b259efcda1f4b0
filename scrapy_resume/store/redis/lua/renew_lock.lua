-- extends the lock's expiry to ARGV[2] ms, only while it still holds ARGV[1]
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
