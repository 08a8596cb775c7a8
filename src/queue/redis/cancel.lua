-- KEYS: delayed
-- ARGV: base, now_ms, retention_s, job ids...
-- The caller passes only ids of jobs that exist: a job without a record is queued (its
-- stream entry is all there is), and cancelling it writes a tombstone record.
-- Returns {cancelled, flagged, already finished, batch completed (0/1)}.
local delayed = KEYS[1]
local base, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cancelled, flagged, finished = 0, 0, 0
local d, touched = {}, {}
for i = 4, #ARGV do
  local jid = ARGV[i]
  local rk = base .. ':job:' .. jid
  local v = redis.call('HMGET', rk, 'st', 'wh')
  local st = v[1] or 'queued'
  if st == 'queued' then
    redis.call('ZREM', delayed, jid)
    -- The stream entry stays; claim drops it because the job is terminal.
    local bk = finish(d, base, jid, 'queued', 'cancelled', 'cancelled by request', nil, now, retention, nil, nil, v[2])
    if bk then touched[bk] = 1 end
    cancelled = cancelled + 1
  elseif st == 'running' then
    redis.call('HSET', rk, 'cx', 1)
    flagged = flagged + 1
  else
    finished = finished + 1
  end
end
flush(d)
-- After the flags: a worker that sees the new generation re-reads them (redis/mod.rs
-- CancelWatch).
redis.call('INCR', base .. ':cxgen')
local completed = #settle_batches(touched, now, retention) > 0 and 1 or 0
return {cancelled, flagged, finished, completed}
