-- KEYS: (none)
-- ARGV: base, now_ms, retention_s, id, token, kind (ok | retry | fail | off | defer),
--   at ms (retry, defer), attempt JSON ('' when none was made), reason
-- Returns 0 when the token is stale (the lease ran out and someone else has it), else 1.
local base, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local id, tok, kind, at, attempt, reason = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local hk = base .. ':wh:' .. id
local due = base .. ':wh:due'
if redis.call('HGET', hk, 'tok') ~= tok then return 0 end
redis.call('HDEL', hk, 'tok')
if attempt ~= '' then
  redis.call('RPUSH', hk .. ':log', attempt)
  redis.call('HINCRBY', hk, 'att', 1)
end
if kind == 'retry' or kind == 'defer' then
  redis.call('HSET', hk, 'st', 'pending', 'next', at)
  if reason ~= '' then redis.call('HSET', hk, 'err', reason) end
  redis.call('ZADD', due, tonumber(at), id)
  return 1
end
if kind == 'ok' then
  redis.call('HSET', hk, 'st', 'delivered', 't2', now)
  redis.call('HDEL', hk, 'err', 'next')
else
  if kind == 'off' then
    redis.call('HSET', base .. ':wh:off', redis.call('HGET', hk, 'url'), reason)
  end
  redis.call('HSET', hk, 'st', 'failed', 't2', now, 'err', reason)
  redis.call('HDEL', hk, 'next')
end
redis.call('ZREM', due, id)
redis.call('EXPIRE', hk, retention)
redis.call('EXPIRE', hk .. ':log', retention)
return 1
