-- KEYS: (none; base-relative, see lib.lua)
-- ARGV: base, now_ms, lease_ms, max, token
-- Takes up to `max` due deliveries: each one's due time moves to the end of the lease
-- (a worker that dies mid-attempt only delays it). Returns 8 per delivery:
-- id, url, type, subject, attempts, created ms, body, disabled reason ('' when none).
local base, now, lease, max, tok = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local due = base .. ':wh:due'
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, max)) do
  local hk = base .. ':wh:' .. id
  local v = redis.call('HMGET', hk, 'url', 'type', 'sub', 'att', 'c', 'body')
  if not v[1] then
    redis.call('ZREM', due, id)
  else
    redis.call('ZADD', due, now + lease, id)
    redis.call('HSET', hk, 'st', 'delivering', 'tok', tok)
    local off = redis.call('HGET', base .. ':wh:off', v[1]) or ''
    for _, x in ipairs({id, v[1], v[2] or '', v[3] or '', v[4] or '0', v[5] or '0', v[6] or '', off}) do
      out[#out + 1] = x
    end
  end
end
return out
