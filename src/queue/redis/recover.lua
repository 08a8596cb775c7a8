-- KEYS: delayed, dlq
-- ARGV: base, group, consumer, min_idle_ms, count, now_ms, max_deliveries, retention_s
-- Takes over entries whose lease expired (their worker died or hung), lane by lane:
-- XAUTOCLAIM makes `consumer` their owner and the caller runs them next, ahead of the
-- backlog (they keep their lane slot). Each lane's scan cursor lives in the lane hash.
-- Returns {claimed (flat, 7 per job as claim.lua), dead ids, completed batch ids}.
local delayed, dlq = KEYS[1], KEYS[2]
local base, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local min_idle, count = ARGV[4], tonumber(ARGV[5])
local now, maxd, retention = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local d, touched = {}, {}
local claimed, dead = {}, {}
-- One of a lane's streams (`urgent`: its interactive one, tokens prefixed `u`), with its
-- own scan cursor.
local function recover(lane, urgent)
  local stream = urgent and urgent_stream(base, lane) or lane_stream(base, lane)
  local prefix, cf = urgent and 'u' or '', urgent and 'curu' or 'cur'
  local lk = lane_key(base, lane)
  if urgent and redis.call('EXISTS', stream) == 0 then return end
  local cursor = redis.call('HGET', lk, cf) or '0-0'
  local ok, r = pcall(redis.call, 'XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', count)
  if not ok then return end
  redis.call('HSET', lk, cf, r[1])
  for _, entry in ipairs(r[2]) do
    local eid, fields = entry[1], entry[2]
    local jid = fields and fields[2]
    local rk = jid and (base .. ':job:' .. jid)
    local v = rk and redis.call('HMGET', rk, 'e', 'st', 'dlv', 'spec', 'att', 'ln', 'wh') or {}
    local stale = v[1] ~= prefix .. eid or v[2] ~= 'running'
    local reason = not stale and rules.at_recover(tonumber(v[3] or '0'), maxd)
    if stale then
      -- A stale entry (the job moved on): drop it.
      redis.call('XACK', stream, group, eid)
      redis.call('XDEL', stream, eid)
    elseif reason then
      redis.call('XACK', stream, group, eid)
      redis.call('XDEL', stream, eid)
      dead_letter(dlq, jid, reason, now)
      dead[#dead + 1] = jid
      local bk = finish(d, base, jid, 'running', 'failed', reason, nil, now, retention, lane, nil, v[7])
      if bk then touched[bk] = batch_of(jid) end
    else
      local dlv = tonumber(v[3] or '0') + 1
      redis.call('HSET', rk, 'w', consumer, 't1', now, 'dlv', dlv)
      claimed[#claimed + 1] = prefix .. eid
      claimed[#claimed + 1] = jid
      claimed[#claimed + 1] = v[4]
      claimed[#claimed + 1] = v[5] or '0'
      claimed[#claimed + 1] = tostring(dlv)
      claimed[#claimed + 1] = v[6] or ''
      claimed[#claimed + 1] = lane
    end
  end
end
for _, lane in ipairs(redis.call('SMEMBERS', base .. ':lanes')) do
  recover(lane, true)
  recover(lane, false)
end
flush(d)
return {claimed, dead, settle_batches(touched, now, retention)}
