-- KEYS: stream, delayed, dlq
-- ARGV: base, group, consumer, min_idle_ms, cursor, count, now_ms, max_deliveries, retention_s
-- Returns {next cursor, requeued ids (table), dead ids (table), completed batches (table)}.
local stream, delayed, dlq = KEYS[1], KEYS[2], KEYS[3]
local base, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local min_idle, cursor, count = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now, maxd, retention = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', count)
local requeued, dead, completed = {}, {}, {}
for _, entry in ipairs(r[2]) do
  local eid, fields = entry[1], entry[2]
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
  if fields and fields[2] then
    local jid = fields[2]
    local rk = base .. ':job:' .. jid
    local v = redis.call('HMGET', rk, 'e', 'st', 'dlv')
    if v[1] == eid and v[2] == 'running' then
      local dlv = tonumber(v[3] or '0')
      if dlv >= maxd then
        local reason = 'dead-lettered: delivered ' .. dlv .. ' times without finishing'
          .. ' (its worker died or lost its lease each time)'
        dead_letter(dlq, jid, reason, now)
        dead[#dead + 1] = jid
        if finish(base, jid, 'running', 'failed', reason, nil, now, retention) == 1 then
          completed[#completed + 1] = batch_of(jid)
        end
      else
        requeue(base, stream, jid, 'running')
        requeued[#requeued + 1] = jid
      end
    end
  end
end
return {r[1], requeued, dead, completed}
