-- Admission and claim, one call per project (DESIGN "Queue and coordination").
-- KEYS: delayed, dlq
-- ARGV: base, group, consumer, count, now_ms, max_deliveries, retention_s, max_wait_ms,
--       project concurrency (0 = none), project rpm (0 = none), first probe wait ms,
--       longest probe wait ms, daily budget nano-USD (0 = none), a running job's
--       estimated cost nano-USD, project name, now as RFC 3339 (hold event bodies),
--       then per configured model: lane, concurrency (0 = project's), rpm (0 = none),
--       daily budget nano-USD (0 = none), a running job's estimated cost nano-USD
-- A held project or lane (hprobe set) admits one probe at a time (rules.held_allowance)
-- and moves its next probe out by rules.probe_delay when it admits one.
-- Returns {wait_ms, flat jobs}: wait_ms is when a lane held back by a limit may next
-- admit (0: none is); flat jobs are 7 per job: token, job id, spec, attempts,
-- deliveries, line, lane. Jobs failed on the way (dead letter, max_wait) are not
-- returned; their batches are completed here when they were the last, and the third
-- element lists one job id of each batch completed so.
local delayed, dlq = KEYS[1], KEYS[2]
local base, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local count, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local maxd, retention, max_wait = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local pconc, prpm = tonumber(ARGV[9]), tonumber(ARGV[10])
local probe_base, probe_max = tonumber(ARGV[11]), tonumber(ARGV[12])
local budget, best = tonumber(ARGV[13]), tonumber(ARGV[14])
local project, stamp = ARGV[15], ARGV[16]
local cfg = {}
for i = 17, #ARGV - 4, 5 do
  cfg[ARGV[i]] = {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])}
end
local d, touched, started = {}, {}, {}
local limits = base .. ':limits'

-- Due retries go back into their lane's stream (bounded per call).
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #due do
  local jid = due[i]
  local r = redis.call('HMGET', base .. ':job:' .. jid, 'm', 'pu')
  local lane = r[1] or '_'
  redis.call('XADD', r[2] == '1' and urgent_stream(base, lane) or lane_stream(base, lane), '*', 'j', jid)
  bump(d, lane_key(base, lane), 'qd', 1)
  redis.call('ZREM', delayed, jid)
end
flush(d) -- admission below reads the lanes' qd
d = {}

local wait = nil
local function hold_until(t) wait = rules.earliest(wait, t) end

local ph = redis.call('HMGET', limits, 'tat', 'hprobe', 'hn', 'bud', 'bmsg')
local ptat = prpm > 0 and tonumber(ph[1] or '0') or 0
local phold = tonumber(ph[2] or '0')
local prunning = (pconc > 0 or phold > 0 or budget > 0) and tonumber(redis.call('HGET', base .. ':counts', 'running') or '0') or 0
local free, pwake = rules.held_allowance(count, prunning, phold, now)
if not free then free, pwake = rules.project_allowance(count, pconc, prpm, prunning, ptat, now) end
hold_until(pwake)

-- A daily budget (the project's, or a lane's within it): running jobs hold their
-- estimate, and once the day's spend reaches the budget the scope is held
-- (budget_exhausted, `bud` + `bmsg` in its hash) until the next UTC day or a larger
-- budget, with lane.held / lane.resumed events as the other holds have. Returns what
-- it allows of `want`, and whether the scope is held.
local day = 'd' .. math.floor(now / 86400000)
local function budget_gate(key, field, model, limit, est, running, want, since, msg)
  local spent = tonumber(redis.call('HGET', base .. ':spend', field) or '0')
  local function event(kind, at, message)
    local data = {project = project, reason = 'budget_exhausted', message = message, held_since_ms = at}
    if model then data.model = model end
    if kind == 'lane.resumed' then data.held_for_ms = math.max(0, now - at) end
    hook(base, now, kind, kind .. '.' .. (model or '*') .. '.' .. at, nil,
      cjson.encode({type = kind, timestamp = stamp, data = data}))
  end
  if limit > 0 and rules.budget_allowance(1, limit, spent, 0, est) == 0 then
    hold_until(rules.next_day_ms(now))
    if not since then
      local message = string.format(
        'spent $%.2f of its $%.2f daily budget; resumes at 00:00 UTC or when budget_usd_per_day is raised',
        spent / 1e9, limit / 1e9)
      redis.call('HSET', key, 'bud', now, 'bmsg', message)
      event('lane.held', now, message)
    end
    return 0, true
  end
  if since then
    redis.call('HDEL', key, 'bud', 'bmsg')
    event('lane.resumed', tonumber(since), msg or '')
  end
  return rules.budget_allowance(want, limit, spent, running, est), false
end
local bheld = false
if budget > 0 or ph[4] then
  local allow
  allow, bheld = budget_gate(limits, day, nil, budget, best, prunning, free, ph[4], ph[5])
  free = math.min(free, allow)
end
local admitted_total = 0
local pinterval = prpm > 0 and 60000 / prpm or 0

-- Reads up to n new entries of one of a lane's streams (`urgent`: its interactive
-- one) and turns them into deliveries; returns {admitted, entries read}.
local out = {}
local function take_from(lane, n, urgent)
  local stream = urgent and urgent_stream(base, lane) or lane_stream(base, lane)
  local prefix = urgent and 'u' or ''
  local ok, res = pcall(redis.call, 'XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', stream, '>')
  if not ok then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', stream, '>')
  end
  if not res then return 0, 0 end
  local entries = res[1][2]
  local admitted = 0
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
    local v = redis.call('HMGET', rk, 'st', 'spec', 'att', 'dlv', 'ln', 'q0', 'wh')
    local st = v[1] or 'queued'
    local spec = v[2] or espec
    if not spec or st ~= 'queued' then
      -- Record expired, or already terminal (cancelled while queued): drop the entry.
      redis.call('XACK', stream, group, eid)
      redis.call('XDEL', stream, eid)
    else
      local q0 = tonumber(v[6] or string.match(eid, '^(%d+)'))
      local dlv = tonumber(v[4] or '0') + 1
      local line = v[5] or eline or ''
      local f = {'st', 'running', 't1', now, 'e', prefix .. eid, 'w', consumer, 'dlv', dlv}
      if urgent then f[#f + 1] = 'pu'; f[#f + 1] = 1 end
      if not v[2] then
        f[#f + 1] = 'spec'; f[#f + 1] = spec
        f[#f + 1] = 'm'; f[#f + 1] = lane
        f[#f + 1] = 'q0'; f[#f + 1] = q0
        f[#f + 1] = 't0'; f[#f + 1] = now
        if line ~= '' then f[#f + 1] = 'ln'; f[#f + 1] = line end
      end
      redis.call('HSET', rk, unpack(f))
      move(d, base, jid, 'queued', 'running', lane)
      local b = batch_of(jid)
      if b and not started[b] then
        started[b] = true
        redis.call('HSETNX', base .. ':batch:' .. b, 'first_ms', now)
      end
      local reason, dead = rules.at_claim(dlv, maxd, q0, now, max_wait)
      if dead then dead_letter(dlq, jid, reason, now) end
      if reason then
        redis.call('XACK', stream, group, eid)
        redis.call('XDEL', stream, eid)
        local bk = finish(d, base, jid, 'running', 'failed', reason, nil, now, retention, lane, nil, v[7])
        if bk then touched[bk] = jid end
      else
        admitted = admitted + 1
        out[#out + 1] = prefix .. eid
        out[#out + 1] = jid
        out[#out + 1] = spec
        out[#out + 1] = v[3] or '0'
        out[#out + 1] = tostring(dlv)
        out[#out + 1] = line
        out[#out + 1] = lane
      end
    end
  end
  return admitted, #entries
end

-- Up to n deliveries of a lane: its interactive stream first, then its backlog. The
-- lane's undelivered count is exact again when both ran dry.
local function take(lane, n)
  local lk = lane_key(base, lane)
  local admitted, read, dry = 0, 0, true
  if redis.call('EXISTS', urgent_stream(base, lane)) == 1 then
    local a, r = take_from(lane, n, true)
    admitted, read, dry = a, r, r < n
  end
  if read < n then
    local a, r = take_from(lane, n - read, false)
    admitted, read, dry = admitted + a, read + r, r < n - read
  end
  if dry then redis.call('HSET', lk, 'qd', 0) else bump(d, lk, 'qd', -read) end
  return admitted
end

-- Held or parked work still ends at max_wait: the lane's oldest undelivered entries
-- that waited past it (entry time before now - max_wait, so their enqueue time is too)
-- are taken, and fail at claim with the reason (at most 1,000 per call).
local function sweep_one(lane, urgent)
  local stream = urgent and urgent_stream(base, lane) or lane_stream(base, lane)
  local last = '0-0'
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if not ok then return end
  for _, g in ipairs(groups) do
    local name, lid = nil, nil
    for k = 1, #g, 2 do
      if g[k] == 'name' then name = g[k + 1] elseif g[k] == 'last-delivered-id' then lid = g[k + 1] end
    end
    if name == group and lid then last = lid end
  end
  -- Only entries older than the cutoff (an end id of `ms` means up to ms-<max seq>).
  local n = #redis.call('XRANGE', stream, '(' .. last, tostring(now - max_wait - 1), 'COUNT', 1000)
  if n > 0 then
    local _, read = take_from(lane, n, urgent)
    bump(d, lane_key(base, lane), 'qd', -read)
  end
end
local function sweep(lane)
  if max_wait <= 0 then return end
  sweep_one(lane, true)
  sweep_one(lane, false)
end

local lanes = (free > 0 or phold > 0 or bheld) and redis.call('SMEMBERS', base .. ':lanes') or {}
if phold > 0 or bheld then
  for _, lane in ipairs(lanes) do sweep(lane) end
end

if free > 0 then
  local n = #lanes
  local start = n > 1 and redis.call('HINCRBY', limits, 'rr', 1) or 0
  for k = 0, n - 1 do
    if free <= 0 then break end
    local lane = lanes[((start + k) % n) + 1]
    local lk = lane_key(base, lane)
    local s = redis.call('HMGET', lk, 'qd', 'run', 'eff', 'pause', 'park', 'tat', 'cap', 'rpm', 'hprobe', 'hn', 'bud', 'bmsg')
    if tonumber(s[1] or '0') > 0 then
      local c = cfg[lane]
      local cap = (c and c[1] > 0) and c[1] or pconc
      local rpm = c and c[2] or 0
      if tostring(cap) ~= (s[7] or '') or tostring(rpm) ~= (s[8] or '') then
        redis.call('HSET', lk, 'cap', cap, 'rpm', rpm)
      end
      local state = {run = tonumber(s[2] or '0'), eff = tonumber(s[3]), tat = tonumber(s[6] or '0'),
        pause = tonumber(s[4] or '0'), park = tonumber(s[5] or '0'), hold = tonumber(s[9] or '0')}
      local allow, lwake = rules.lane_allowance(free, cap, rpm, state, now)
      hold_until(lwake)
      local lbudget = c and c[3] or 0
      if lbudget > 0 or s[11] then
        local lallow, lheld = budget_gate(lk, day .. ':' .. lane, lane, lbudget, c and c[4] or 0, state.run, allow, s[11], s[12])
        allow = math.min(allow, lallow)
        if lheld then sweep(lane) end
      end
      if allow == 0 and phold == 0 and (state.hold > 0 or state.park > now) then sweep(lane) end
      if allow > 0 then
        local got = take(lane, allow)
        if got > 0 then
          free = free - got
          admitted_total = admitted_total + got
          if state.hold > 0 then
            local hn = tonumber(s[10] or '0')
            redis.call('HSET', lk, 'hprobe', math.floor(now + rules.probe_delay(hn, probe_base, probe_max)), 'hn', hn + 1)
          end
          if rpm > 0 then
            redis.call('HSET', lk, 'tat', rules.gcra_spend(state.tat, now, got, 60000 / rpm))
          end
          if prpm > 0 then ptat = rules.gcra_spend(ptat, now, got, pinterval) end
        end
      end
    end
  end
  if prpm > 0 then redis.call('HSET', limits, 'tat', ptat) end
  if phold > 0 and admitted_total > 0 then
    local hn = tonumber(ph[3] or '0')
    redis.call('HSET', limits, 'hprobe', math.floor(now + rules.probe_delay(hn, probe_base, probe_max)), 'hn', hn + 1)
  end
end
flush(d)
local completed = settle_batches(touched, now, retention)
return {wait or 0, out, completed}
