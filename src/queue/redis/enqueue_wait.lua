-- Enqueues jobs that wait for others (NewJob::deps), in the MULTI of their chunk after
-- its other jobs and counters: a dependency that already ended is settled now (success
-- counts as met; anything else cancels the job, naming it, as rules.after_dependency
-- says); the job waits for the rest (lib.lua, "Jobs waiting for others"), or goes to its
-- lane at once when none is pending.
-- ARGV: base, now_ms, retention_s, then per job: id, lane, spec, line ('' none),
--   webhook ('' none), interactive (0/1), the event its end fires ('' job.<status>),
--   n, then n times: dependency id, its name,
--   1 when the job runs whatever became of it (else 0)
-- Returns 1.
local base, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local d, touched = {}, {}
local i = 4
while i <= #ARGV do
  local jid, lane, spec, line, wh = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local urgent, ev, n = ARGV[i + 5] == '1', ARGV[i + 6], tonumber(ARGV[i + 7])
  i = i + 8
  local pending, reason = {}, nil
  for _ = 1, n do
    local dep, name, any = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    local v = redis.call('HMGET', base .. ':job:' .. dep, 'st', 'err')
    local st = v[1] or 'queued'
    if st == 'queued' or st == 'running' then
      pending[#pending + 1] = {dep, any .. '\t' .. name}
    elseif not reason then
      local what, why = rules.after_dependency(1, st, name, v[2] or '', any == '1')
      if what == 'cancel' then reason = why end
    end
  end
  local rk = base .. ':job:' .. jid
  if wh ~= '' then redis.call('HSET', rk, 'wh', wh) end
  if ev ~= '' then redis.call('HSET', rk, 'ev', ev) end
  if reason then
    finish(d, base, jid, 'queued', 'cancelled', reason, nil, now, retention, nil, nil, wh ~= '' and wh or nil)
    touched[base .. ':batch:' .. batch_of(jid)] = 1
  elseif #pending == 0 then
    release(d, base, jid, lane, spec, line, urgent)
  else
    local f = {'st', 'queued', 'dl', #pending, 'ws', spec, 'm', lane}
    if line ~= '' then f[#f + 1] = 'wl'; f[#f + 1] = line end
    if urgent then f[#f + 1] = 'pu'; f[#f + 1] = 1 end
    redis.call('HSET', rk, unpack(f))
    for _, p in ipairs(pending) do
      redis.call('RPUSH', base .. ':job:' .. p[1] .. ':dn', jid .. '\t' .. p[2])
      redis.call('HSET', base .. ':job:' .. p[1], 'hd', 1)
    end
  end
end
flush(d)
settle_batches(touched, now, retention)
return 1
