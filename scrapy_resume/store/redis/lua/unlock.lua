-- deletes the lock's key only while it still holds ARGV[1]
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
