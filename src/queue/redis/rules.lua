-- The queue's decisions: src/queue/rules.rs in Lua, function for function (read the
-- doc comments there). Pure: no redis.call, `now` is an argument. Prepended to every
-- script before lib.lua; tests/it/queue_rules.rs runs the same cases through both.
-- Conventions: an absent value (Rust `None`) is nil; times are unix ms.
local rules = {}

rules.SLOT_POLL_MS = 25

-- Returns allow, interval, next_ms (nil when allow > 0).
function rules.gcra(tat, rpm, now)
  local interval = 60000 / rpm
  local burst = math.max(1, math.floor(rpm / 120))
  local t = math.max(tat, now)
  local allow = math.floor((now + interval * (burst - 1) - t) / interval) + 1
  if allow <= 0 then return 0, interval, math.floor(t - interval * (burst - 1)) end
  return allow, interval, nil
end

function rules.gcra_spend(tat, now, n, interval)
  return math.max(tat, now) + n * interval
end

function rules.earliest(a, b)
  if a and b then return math.min(a, b) end
  return a or b
end

-- Returns allow, wake_ms (nil: none).
function rules.project_allowance(want, concurrency, rpm, running, tat, now)
  local allow, wake = want, nil
  if concurrency > 0 then
    allow = math.max(0, math.min(allow, concurrency - running))
    if allow == 0 then wake = now + rules.SLOT_POLL_MS end
  end
  if rpm > 0 and allow > 0 then
    local a, _, nxt = rules.gcra(tat, rpm, now)
    allow = math.min(allow, a)
    wake = rules.earliest(wake, nxt)
  end
  return allow, wake
end

-- Jobs of `want` a daily budget (nano-USD, 0: none) lets start; 0: spent.
function rules.budget_allowance(want, budget, spent, running, est)
  if budget == 0 then return want end
  local committed = spent + running * est
  if committed >= budget then return 0 end
  if est == 0 then return want end
  return math.min(want, math.ceil((budget - committed) / est))
end

function rules.next_day_ms(now)
  return (math.floor(now / 86400000) + 1) * 86400000
end

-- Returns nil when not held (probe_ms 0), else allow, wake_ms (nil: none).
function rules.held_allowance(want, running, probe_ms, now)
  if probe_ms == 0 then return nil end
  local allow = 0
  if now >= probe_ms and running == 0 then allow = math.min(want, 1) end
  local wake = nil
  if probe_ms > now then wake = probe_ms end
  return allow, wake
end

function rules.probe_delay(probes, base_ms, max_ms)
  return math.min(base_ms * 2 ^ math.min(probes, 20), max_ms)
end

-- `lane` = {run =, eff = (nil: not lowered), tat =, pause =, park =, hold =}.
-- Returns allow, wake_ms (nil: none).
function rules.lane_allowance(free, concurrency, rpm, lane, now)
  local hallow, hwake = rules.held_allowance(free, lane.run, lane.hold or 0, now)
  if hallow then return hallow, hwake end
  if lane.park > now then return 0, nil end
  if lane.pause > now then return 0, lane.pause end
  local allow, wake = free, nil
  if concurrency > 0 then
    local eff = math.max(1, math.floor(math.min(lane.eff or concurrency, concurrency)))
    allow = math.max(0, math.min(allow, eff - lane.run))
    if allow == 0 then wake = now + rules.SLOT_POLL_MS end
  end
  if rpm > 0 and allow > 0 then
    local a, _, nxt = rules.gcra(lane.tat, rpm, now)
    allow = math.min(allow, a)
    wake = rules.earliest(wake, nxt)
  end
  return allow, wake
end

-- Returns reason, dead_letter (nil: the job runs).
function rules.at_claim(deliveries, max_deliveries, enqueued, now, max_wait)
  if deliveries > max_deliveries then
    return 'dead-lettered: delivered ' .. (deliveries - 1) .. ' times without finishing', true
  end
  local waited = math.max(0, now - enqueued)
  if max_wait > 0 and waited > max_wait then
    return 'waited ' .. math.floor(waited / 1000) .. ' s without running (max_wait '
      .. math.floor(max_wait / 1000) .. ' s)', false
  end
  return nil, nil
end

-- Returns reason, dead_letter (nil: taken over).
function rules.at_recover(deliveries, max_deliveries)
  if deliveries >= max_deliveries then
    return 'dead-lettered: delivered ' .. deliveries .. ' times without finishing'
      .. ' (its worker died or lost its lease each time)', true
  end
  return nil, nil
end

-- Returns the failure reason, or nil (the retry goes ahead).
function rules.at_deferral(counted, enqueued, now, max_wait, err)
  local waited = math.max(0, now - enqueued)
  if not counted and max_wait > 0 and waited > max_wait then
    return 'waited ' .. math.floor(waited / 1000) .. ' s for capacity (max_wait '
      .. math.floor(max_wait / 1000) .. ' s); last error: ' .. err
  end
  return nil
end

function rules.fenced(record_token, running, lease_token)
  return running and record_token == lease_token
end

-- Returns the raised effective concurrency, or nil (no change).
function rules.aimd_increase(eff, cap, answered)
  if not eff then return nil end
  if cap > 0 and eff > 0 and eff < cap then return math.min(cap, eff + answered / eff) end
  return nil
end

-- `aimd` = {decrease =, interval =, default_pause =}.
-- Returns eff (nil: not lowered now), pause_ms.
function rules.on_rate_429(lane, dec, cap, delay, now, aimd)
  if cap <= 0 then cap = math.max(1, lane.run) end
  local eff = nil
  if math.max(0, now - dec) >= aimd.interval then
    eff = math.max(1, math.min(lane.eff or cap, cap) * aimd.decrease)
  end
  local until_ms = now + (delay > 0 and delay or aimd.default_pause)
  return eff, math.max(lane.pause, until_ms)
end

-- `w` = {start =, throttled =, answered =, prev_throttled =, prev_answered =}.
function rules.roll_window(w, now)
  local age = math.max(0, now - w.start)
  if age < 60000 then return w end
  if age < 120000 then
    return {start = now, throttled = 0, answered = 0, prev_throttled = w.throttled,
      prev_answered = w.answered}
  end
  return {start = now, throttled = 0, answered = 0, prev_throttled = 0, prev_answered = 0}
end

function rules.hook_target(own, default)
  if own and own ~= '' then return own end
  if default and default ~= '' then return default end
  return nil
end

function rules.batch_complete(total, done, completed)
  return not completed and total ~= nil and done >= total
end

-- Returns 'wait', 'release' or 'cancel' and the reason (cancel only).
function rules.after_dependency(left, status, name, err, any)
  if status ~= 'succeeded' and not any then
    local why = ''
    if err and err ~= '' then why = ': ' .. err end
    return 'cancel', name .. ' was ' .. status .. why
  end
  if left <= 1 then return 'release', nil end
  return 'wait', nil
end
