-- Appends a turn to a chat session, atomically, and refreshes the session's TTL.
-- KEYS: session record, its turns list, its answers hash
-- ARGV: turn JSON, ttl_s
-- Returns {index of the new turn (0-based), the turn before it or false}, or false when
-- the session is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local n = redis.call('RPUSH', KEYS[2], ARGV[1])
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[2]) end
local before = false
if n > 1 then before = redis.call('LINDEX', KEYS[2], n - 2) end
return {n - 1, before}
