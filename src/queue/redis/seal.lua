-- KEYS: batch record
-- ARGV: total, now_ms, retention_s
-- Returns 1 if sealing completed the batch.
local bk = KEYS[1]
redis.call('HSET', bk, 'total', ARGV[1])
return maybe_complete(bk, tonumber(ARGV[2]), tonumber(ARGV[3]))
