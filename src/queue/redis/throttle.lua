-- Feedback from a 429 or an outage (KEYS: none; everything under ARGV[1]).
-- ARGV: base, lane, now_ms, kind (rate | park | hold), delay_ms (0: none advised; hold:
--       the first probe's wait), default pause ms, decrease factor, min decrease
--       interval ms, reason (park, hold), message (hold), scope (hold: lane | project),
--       the lane.held event's body and subject (hold)
-- hold: the lane (or the project's limits hash) is held until a probe gets through;
--   returns 1 when this call started the hold, 0 when it was held already.
-- rate: multiplicative decrease of the lane's effective concurrency (at most once per
--   interval: one overshoot brings several 429s), and a pause of every worker's
--   admission for the advised delay. park: no admission until the given time (a daily
--   quota is spent) or an operator unparks it.
local base, lane, now, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local delay, default_pause = tonumber(ARGV[5]), tonumber(ARGV[6])
local beta, interval, reason = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local lk = lane_key(base, lane)
if kind == 'hold' then
  local key = ARGV[11] == 'project' and (base .. ':limits') or lk
  if redis.call('HEXISTS', key, 'hold') == 1 then return 0 end
  redis.call('HSET', key, 'hold', reason, 'hmsg', ARGV[10], 'hsince', now, 'hprobe', now + delay, 'hn', 0)
  hook(base, now, 'lane.held', ARGV[13], nil, ARGV[12])
  return 1
end
roll_window(lk, now)
redis.call('HINCRBY', lk, 'w429', 1)
if kind == 'park' then
  redis.call('HSET', lk, 'park', now + delay, 'why', reason)
  return 1
end
local v = redis.call('HMGET', lk, 'eff', 'cap', 'dec', 'pause', 'run')
local lane_state = {run = tonumber(v[5] or '0'), eff = tonumber(v[1]), pause = tonumber(v[4] or '0')}
local eff, pause = rules.on_rate_429(lane_state, tonumber(v[3] or '0'), tonumber(v[2] or '0'), delay, now,
  {decrease = beta, interval = interval, default_pause = default_pause})
if eff then redis.call('HSET', lk, 'eff', tostring(eff), 'dec', now) end
if pause > lane_state.pause then redis.call('HSET', lk, 'pause', pause) end
return 0
