-- Keeps the model's answer to one turn of a chat session, and refreshes its TTL.
-- KEYS: session record, its turns list, its answers hash
-- ARGV: turn index, answer JSON, ttl_s
-- Returns 1, or 0 when the session (or that turn) is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('LLEN', KEYS[2]) <= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[3]) end
return 1
