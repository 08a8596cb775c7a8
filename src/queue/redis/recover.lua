-- KEYS: stream, delayed, dlq
-- ARGV: base, group, consumer, min_idle_ms, cursor, count, now_ms, max_deliveries, retention_s
-- Takes over entries whose lease expired (their worker died or hung): XAUTOCLAIM makes
-- `consumer` their owner and the caller runs them next, ahead of the backlog.
-- Returns {next cursor, claimed (flat: token, job, spec, attempts, deliveries, line),
--          dead ids, completed batches}.
local stream, delayed, dlq = KEYS[1], KEYS[2], KEYS[3]
local base, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local min_idle, cursor, count = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now, maxd, retention = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', count)
local claimed, dead, completed = {}, {}, {}
for _, entry in ipairs(r[2]) do
  local eid, fields = entry[1], entry[2]
  local jid = fields and fields[2]
  local rk = jid and (base .. ':job:' .. jid)
  local v = rk and redis.call('HMGET', rk, 'e', 'st', 'dlv', 'spec', 'att', 'ln') or {}
  if v[1] ~= eid or v[2] ~= 'running' then
    -- A stale entry (the job moved on): drop it.
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
  elseif tonumber(v[3] or '0') >= maxd then
    local reason = 'dead-lettered: delivered ' .. v[3] .. ' times without finishing'
      .. ' (its worker died or lost its lease each time)'
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
    dead_letter(dlq, jid, reason, now)
    dead[#dead + 1] = jid
    if finish(base, jid, 'running', 'failed', reason, nil, now, retention) == 1 then
      completed[#completed + 1] = batch_of(jid)
    end
  else
    local dlv = redis.call('HINCRBY', rk, 'dlv', 1)
    redis.call('HSET', rk, 'w', consumer, 't1', now)
    claimed[#claimed + 1] = eid
    claimed[#claimed + 1] = jid
    claimed[#claimed + 1] = v[4]
    claimed[#claimed + 1] = v[5] or '0'
    claimed[#claimed + 1] = tostring(dlv)
    claimed[#claimed + 1] = v[6] or ''
  end
end
return {r[1], claimed, dead, completed}
