-- KEYS: stream, delayed, dlq
-- ARGV: base, group, consumer, count, now_ms, max_deliveries, retention_s
-- Returns a flat array: token, job id, spec, attempts, deliveries, line (5 per job)
-- followed by nothing else; jobs dead-lettered on the way are not returned.
local stream, delayed, dlq = KEYS[1], KEYS[2], KEYS[3]
local base, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local count, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local maxd, retention = tonumber(ARGV[6]), tonumber(ARGV[7])

-- Due retries go back into the stream (bounded per call: no unpack, no long block).
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #due do
  redis.call('XADD', stream, '*', 'j', due[i])
  redis.call('ZREM', delayed, due[i])
end

local out = {}
local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream, '>')
if not res then return out end
local entries = res[1][2]
local batches = {}
for i = 1, #entries do
  local eid, fields = entries[i][1], entries[i][2]
  -- Entry fields: j = job id; for a first delivery also s = spec, l = line (a queued
  -- job is only its stream entry: no record until it is claimed).
  local jid, espec, eline = nil, nil, nil
  for f = 1, #fields, 2 do
    if fields[f] == 'j' then jid = fields[f + 1]
    elseif fields[f] == 's' then espec = fields[f + 1]
    elseif fields[f] == 'l' then eline = fields[f + 1] end
  end
  local rk = base .. ':job:' .. jid
  local v = redis.call('HMGET', rk, 'st', 'spec', 'att', 'dlv', 'ln')
  local st = v[1] or 'queued'
  local spec = v[2] or espec
  if not spec or st ~= 'queued' then
    -- Record expired, or already terminal (cancelled while queued): drop the entry.
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
  else
    if not v[2] then
      redis.call('HSET', rk, 'spec', spec)
      if eline and eline ~= '' then redis.call('HSET', rk, 'ln', eline) end
    end
    local line = v[5] or eline or ''
    local dlv = redis.call('HINCRBY', rk, 'dlv', 1)
    redis.call('HSET', rk, 'st', 'running', 't1', now, 'e', eid, 'w', consumer)
    move(base, jid, 'queued', 'running')
    local b = batch_of(jid)
    if b and not batches[b] then
      batches[b] = true
      redis.call('HSETNX', base .. ':batch:' .. b, 'first_ms', now)
    end
    if dlv > maxd then
      local reason = 'dead-lettered: delivered ' .. (dlv - 1) .. ' times without finishing'
      redis.call('XACK', stream, group, eid)
      redis.call('XDEL', stream, eid)
      dead_letter(dlq, jid, reason, now)
      finish(base, jid, 'running', 'failed', reason, nil, now, retention)
    else
      out[#out + 1] = eid
      out[#out + 1] = jid
      out[#out + 1] = spec
      out[#out + 1] = v[3] or '0'
      out[#out + 1] = tostring(dlv)
      out[#out + 1] = line
    end
  end
end
return out
