-- Appends a turn to a chat session when it has exactly the expected number of turns.
-- KEYS: session record, its turns list
-- ARGV: expected turn count, turn JSON, retention_s
-- Returns 1 if appended, 0 if the session is gone or another turn came first.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
