-- KEYS: delayed, dlq
-- ARGV: base, group, now_ms, retention_s, max_wait_ms, max log entries, project name,
--       now as RFC 3339 (lane.resumed bodies), then 8 per item:
--   job id, token, lane, kind (F finish | D finish + dead-letter | R retry | L release),
--   status (F/D), error, result (F/D) or delay ms (R), count attempt (R: 1/0) or the
--   job's cost in nano-USD (F/D: added to its batch's and its project's day's spend)
-- Returns one integer per item: 0 stale lease, 1 applied, 3 applied + batch completed.
-- A provider answer (succeeded, blocked) raises its lane's AIMD concurrency by 1/eff.
local delayed, dlq = KEYS[1], KEYS[2]
local base, group = ARGV[1], ARGV[2]
local now, retention, max_wait = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local max_log, project, stamp = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local d, touched, answered = {}, {}, {}
local out = {}
local acks = {}
local i, item = 9, 0
while i + 7 <= #ARGV do
  local jid, token, lane, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local status, err, extra, counted = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  i = i + 8
  item = item + 1
  local cost = (kind == 'F' or kind == 'D') and tonumber(counted) or 0
  local stream, eid = token_stream(base, lane, token)
  local a = acks[stream]
  if not a then a = {}; acks[stream] = a end
  a[#a + 1] = eid
  local rk = base .. ':job:' .. jid
  local cur = redis.call('HMGET', rk, 'e', 'st', 'att', 'q0', 'wh')
  if not rules.fenced(cur[1], cur[2] == 'running', token) then
    out[item] = 0
  else
    out[item] = 1
    local att = tonumber(cur[3] or '0')
    if kind == 'R' then
      -- A deferral past the job's deadline ends it.
      local reason = rules.at_deferral(counted == '1', tonumber(cur[4] or now), now, max_wait, err)
      if reason then kind, status, err, extra = 'F', 'failed', reason, '' end
    end
    if kind == 'F' or kind == 'D' then
      if kind == 'D' then dead_letter(dlq, jid, err, now) end
      -- The final attempt counts too.
      local bk = finish(d, base, jid, 'running', status, err, extra, now, retention, lane, att + 1, cur[5])
      if bk then touched[bk] = item end
      if cost > 0 then
        if bk then bump(d, bk, 'cost', cost) end
        local day = 'd' .. math.floor(now / 86400000)
        bump(d, base .. ':spend', day, cost)
        bump(d, base .. ':spend', day .. ':' .. lane, cost)
      end
      if status == 'succeeded' or status == 'blocked' then
        answered[lane] = (answered[lane] or 0) + 1
      end
    elseif kind == 'R' then
      local f = {'st', 'queued', 'err', err, 'dlv', 0}
      if counted == '1' then f[#f + 1] = 'att'; f[#f + 1] = att + 1 end
      redis.call('HSET', rk, unpack(f))
      redis.call('HDEL', rk, 'e', 'w')
      log_attempt(rk, now, err, counted == '1', max_log)
      move(d, base, jid, 'running', 'queued', lane)
      redis.call('ZADD', delayed, now + tonumber(extra), jid)
    else
      redis.call('HSET', rk, 'dlv', math.max(0, tonumber(redis.call('HGET', rk, 'dlv') or '1') - 1))
      requeue(d, base, jid, 'running', lane)
    end
  end
end
-- Stale or not, the delivery is over: acknowledge and delete every entry at once.
for stream, tokens in pairs(acks) do
  redis.call('XACK', stream, group, unpack(tokens))
  redis.call('XDEL', stream, unpack(tokens))
end
-- An answer ends the project's hold and its lane's (the outage is over), with a
-- lane.resumed event (body rendered here, as queue::hooks::lane_event_body does).
local HOLD = {'hold', 'hmsg', 'hsince', 'hprobe', 'hn'}
local function resume(key, model)
  local h = redis.call('HMGET', key, 'hold', 'hmsg', 'hsince')
  if not h[1] then return end
  redis.call('HDEL', key, unpack(HOLD))
  local since = tonumber(h[3] or '0')
  local data = {project = project, reason = h[1], message = h[2] or '', held_since_ms = since,
    held_for_ms = math.max(0, now - since)}
  if model then data.model = model end
  local subject = 'lane.resumed.' .. (model or '*') .. '.' .. (h[3] or '0')
  hook(base, now, 'lane.resumed', subject, nil,
    cjson.encode({type = 'lane.resumed', timestamp = stamp, data = data}))
end
if next(answered) ~= nil then resume(base .. ':limits', nil) end
-- Additive increase: +1 per eff answers, never above the configured cap.
for lane, k in pairs(answered) do
  local lk = lane_key(base, lane)
  resume(lk, lane)
  roll_window(lk, now)
  local v = redis.call('HMGET', lk, 'eff', 'cap')
  local eff = rules.aimd_increase(tonumber(v[1]), tonumber(v[2] or '0'), k)
  if eff then redis.call('HSET', lk, 'eff', tostring(eff)) end
  bump(d, lk, 'wok', k)
end
flush(d)
for _, item in ipairs(settle_batches(touched, now, retention)) do out[item] = 3 end
return out
