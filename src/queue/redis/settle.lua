-- KEYS: stream, delayed, dlq
-- ARGV: base, group, now_ms, retention_s, then 7 per item:
--   job id, token, kind (F finish | D finish + dead-letter | R retry | L release),
--   status (F/D), error, result (F/D) or delay ms (R), count attempt (R: 1/0)
-- Returns one integer per item: 0 stale lease, 1 applied, 3 applied + batch completed.
local stream, delayed, dlq = KEYS[1], KEYS[2], KEYS[3]
local base, group = ARGV[1], ARGV[2]
local now, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local i = 5
while i + 6 <= #ARGV do
  local jid, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local status, err, extra, counted = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  i = i + 7
  local rk = base .. ':job:' .. jid
  redis.call('XACK', stream, group, token)
  local cur = redis.call('HMGET', rk, 'e', 'st')
  if cur[1] ~= token or cur[2] ~= 'running' then
    out[#out + 1] = 0
  else
    redis.call('XDEL', stream, token)
    if kind == 'F' or kind == 'D' then
      if kind == 'D' then dead_letter(dlq, jid, err, now) end
      redis.call('HINCRBY', rk, 'att', 1) -- the final attempt counts too
      local c = finish(base, jid, 'running', status, err, extra, now, retention)
      out[#out + 1] = 1 + 2 * c
    elseif kind == 'R' then
      redis.call('HSET', rk, 'st', 'queued', 'err', err, 'dlv', 0)
      redis.call('HDEL', rk, 'e', 'w')
      if counted == '1' then redis.call('HINCRBY', rk, 'att', 1) end
      move(base, jid, 'running', 'queued')
      redis.call('ZADD', delayed, now + tonumber(extra), jid)
      out[#out + 1] = 1
    else
      redis.call('HINCRBY', rk, 'dlv', -1)
      requeue(base, stream, jid, 'running')
      out[#out + 1] = 1
    end
  end
end
return out
