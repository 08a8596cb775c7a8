-- Cancels a batch's jobs that are still only entries of one lane's stream (queued,
-- never claimed), reading their line from the entry so their records keep it, and
-- removes the entries. Jobs with a record (running, waiting for a retry) are left to
-- cancel.lua, which the caller runs next over the batch's ids.
-- KEYS: (none; base-relative)
-- ARGV: base, now_ms, retention_s, batch id, lane, start id (exclusive; '-' first), count,
--       1 for the lane's interactive stream
-- Returns {next start id ('' when the stream is done), cancelled, batch completed (0/1)}.
local base, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local batch, lane, start, count = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local stream = ARGV[8] == '1' and urgent_stream(base, lane) or lane_stream(base, lane)
local from = start == '-' and '-' or ('(' .. start)
local entries = redis.call('XRANGE', stream, from, '+', 'COUNT', count)
local d, touched = {}, {}
local cancelled, gone = 0, 0
for _, entry in ipairs(entries) do
  local eid, fields = entry[1], entry[2]
  local jid, eline = nil, nil
  for f = 1, #fields, 2 do
    if fields[f] == 'j' then jid = fields[f + 1]
    elseif fields[f] == 'l' then eline = fields[f + 1] end
  end
  if jid and batch_of(jid) == batch then
    local rk = base .. ':job:' .. jid
    local v = redis.call('HMGET', rk, 'st', 'wh', 'e')
    -- Undelivered: no record yet, or requeued (queued, no delivery token).
    if (v[1] == false or v[1] == 'queued') and not v[3] then
      if eline and not v[1] then redis.call('HSET', rk, 'ln', eline) end
      local bk = finish(d, base, jid, 'queued', 'cancelled', 'cancelled by request', nil, now, retention, nil, nil, v[2])
      if bk then touched[bk] = 1 end
      redis.call('XDEL', stream, eid)
      gone = gone + 1
      cancelled = cancelled + 1
    end
  end
end
if gone > 0 then bump(d, lane_key(base, lane), 'qd', -gone) end
flush(d)
local completed = #settle_batches(touched, now, retention) > 0 and 1 or 0
local next_start = ''
if #entries == count then next_start = entries[#entries][1] end
return {next_start, cancelled, completed}
