-- Shared by every script (prepended). A project's keys all start with `base`
-- ("<prefix>:{p:<project>}"), so they hash to one Cluster slot.
-- Job records:   base..':job:'..id     (hash, fields in records.rs job_fields)
-- Batch records: base..':batch:'..id   (hash, counters per status), with lists
--   ':fail' (newest failed/blocked ids), ':cx' (newest cancelled ids) and the string
--   ':lh' (4 bytes per job: hashes of an idempotent submit's jobs)
-- Project counts: base..':counts'      (hash, counters per status)
-- Lanes: one per model ("project+model", the unit of Google's quotas). Each has a
--   stream base..':q:'..lane (consumer group `workers`) and a state hash
--   base..':lane:'..lane: run (in flight), qd (stream entries not yet delivered),
--   cap/rpm (configured, written by claim), eff (AIMD concurrency), tat (GCRA),
--   pause (ms), park (ms) + why, dec (last decrease ms), 429/ok counts per minute.
-- base..':lanes' is the set of lanes; base..':limits' the project's own GCRA tat.
-- Webhooks (src/queue/hooks.rs): base..':cfg' holds the project's default webhook URL
--   (`hook`); base..':wh:due' (zset id -> due ms), base..':wh:'..id (hash: url, type, sub,
--   st, c, att, tok, body, next, err, t2) and its ':log' list of attempts;
--   base..':wh:off' maps disabled endpoint URLs to why.

-- The project's default webhook URL ('' when none), read once per script call.
local default_hook_cache = nil
local function default_hook(base)
  if default_hook_cache == nil then
    default_hook_cache = redis.call('HGET', base .. ':cfg', 'hook') or ''
  end
  return default_hook_cache
end

-- Enqueues the webhook event `typ` about `subject` for `url` (nothing without a URL;
-- once per subject: a second call is a no-op).
local function hook(base, now, typ, subject, url, body)
  url = rules.hook_target(url, default_hook(base))
  if not url then return end
  local id = 'msg_' .. subject
  local hk = base .. ':wh:' .. id
  if redis.call('HSETNX', hk, 'url', url) == 0 then return end
  redis.call('HSET', hk, 'type', typ, 'sub', subject, 'st', 'pending', 'c', now, 'att', 0)
  if body then redis.call('HSET', hk, 'body', body) end
  redis.call('ZADD', base .. ':wh:due', now, id)
end

local function batch_of(jid)
  return string.match(jid, '^(.+)%.%d+$')
end

local function lane_stream(base, lane) return base .. ':q:' .. lane end
local function lane_key(base, lane) return base .. ':lane:' .. lane end
-- Interactive jobs (the HTTP API's single requests) wait in a second stream of their
-- lane, read first: under the lane's limits, ahead of its backlog. Their delivery tokens
-- carry a `u` before the entry id, so a settle, extend or recover finds the stream.
local function urgent_stream(base, lane) return base .. ':q:' .. lane .. '!' end
local function token_stream(base, lane, token)
  if string.sub(token, 1, 1) == 'u' then return urgent_stream(base, lane), string.sub(token, 2) end
  return lane_stream(base, lane), token
end

-- Counter deltas, applied once per script call: one HINCRBY per key and field however
-- many jobs moved.
local function bump(d, key, field, n)
  local t = d[key]
  if not t then t = {}; d[key] = t end
  t[field] = (t[field] or 0) + n
end

local function flush(d)
  for key, fields in pairs(d) do
    for f, n in pairs(fields) do
      if n ~= 0 then redis.call('HINCRBY', key, f, n) end
    end
  end
end

-- Moves one job from status `from` to `to` in the project and batch counters, and in
-- its lane's in-flight count.
local function move(d, base, jid, from, to, lane)
  local counts = base .. ':counts'
  bump(d, counts, from, -1)
  bump(d, counts, to, 1)
  local b = batch_of(jid)
  if b then
    local bk = base .. ':batch:' .. b
    bump(d, bk, from, -1)
    bump(d, bk, to, 1)
  end
  if lane then
    local lk = lane_key(base, lane)
    if from == 'running' then bump(d, lk, 'run', -1) end
    if to == 'running' then bump(d, lk, 'run', 1) end
  end
end

-- Completes the batch if every job is terminal and the batch is sealed; returns 1 for
-- the one caller that completes it (HSETNX). Call after flush().
local function maybe_complete(bk, now, retention)
  local v = redis.call('HMGET', bk, 'total', 'done', 'completed_ms')
  if not rules.batch_complete(tonumber(v[1]), tonumber(v[2] or '0'), v[3] ~= false) then return 0 end
  if redis.call('HSETNX', bk, 'completed_ms', now) == 1 then
    redis.call('EXPIRE', bk, retention)
    redis.call('EXPIRE', bk .. ':fail', retention)
    redis.call('EXPIRE', bk .. ':cx', retention)
    redis.call('EXPIRE', bk .. ':lh', retention)
    local base, b = string.match(bk, '^(.*):batch:(.*)$')
    hook(base, now, 'batch.completed', b, redis.call('HGET', bk, 'webhook'))
    return 1
  end
  return 0
end

-- Terminal transition of job `jid` from status `from` (counters into `d`); `att`, when
-- given, is the final attempt count. Returns the batch key (nil without a batch): the
-- caller stamps last_ms and checks completion once per batch after flush(), see
-- settle_batches(). `wh` is the job's own webhook URL (its record's `wh`), if any: the
-- event goes there, else to the project's default.
-- Jobs waiting for others (NewJob::deps): the waiting job's record has st = queued,
-- dl = dependencies still pending, ws/wl = its spec and line (it is in no stream yet),
-- m = lane, pu = interactive; each dependency lists it in base..':job:'..dep..':dn'
-- ("waiting id\t<1: runs whatever the outcome, else 0>\tname of the dependency"), and
-- has `hd` = 1 in its record, so finish() reads that list only then and releases or
-- cancels them.
local after_finish -- defined below finish (they call each other)

local function finish(d, base, jid, from, status, err, res, now, retention, lane, att, wh)
  local rk = base .. ':job:' .. jid
  local f = {'st', status, 't2', now}
  if att then f[#f + 1] = 'att'; f[#f + 1] = att end
  if err and err ~= '' then f[#f + 1] = 'err'; f[#f + 1] = err end
  if res and res ~= '' then f[#f + 1] = 'res'; f[#f + 1] = res end
  redis.call('HSET', rk, unpack(f))
  if err and err ~= '' then
    redis.call('HDEL', rk, 'spec', 'e', 'cx', 'dlv')
  else
    -- A success keeps no error: the retries it went through are in its log.
    redis.call('HDEL', rk, 'spec', 'e', 'cx', 'dlv', 'err')
  end
  redis.call('EXPIRE', rk, retention)
  move(d, base, jid, from, status, lane)
  -- `ev`: the event its end fires instead of job.<status> (a story's assembly); `hd`:
  -- jobs wait for this one (enqueue_wait.lua).
  local f = redis.call('HMGET', rk, 'pu', 'ev', 'hd')
  hook(base, now, f[2] or ('job.' .. status), jid, wh)
  -- An interactive job (an HTTP request waits for it): tell the API processes.
  if f[1] == '1' then redis.call('PUBLISH', base .. ':news', 'f:' .. jid) end
  if f[3] then after_finish(d, base, jid, status, err, now, retention) end
  local b = batch_of(jid)
  if not b then return nil end
  local bk = base .. ':batch:' .. b
  bump(d, bk, 'done', 1)
  if status ~= 'succeeded' then
    -- Cancellations are kept apart: a cancel is not a problem to show.
    local list = bk .. (status == 'cancelled' and ':cx' or ':fail')
    redis.call('LPUSH', list, jid)
    redis.call('LTRIM', list, 0, 999)
  end
  return bk
end

-- A waiting job goes to its lane's stream as a first delivery would find it.
local function release(d, base, jid, lane, spec, line, urgent)
  local args = {'j', jid, 's', spec}
  if line and line ~= '' then args[#args + 1] = 'l'; args[#args + 1] = line end
  redis.call('XADD', urgent and urgent_stream(base, lane) or lane_stream(base, lane), '*', unpack(args))
  bump(d, lane_key(base, lane), 'qd', 1)
end

-- After job `jid` ended `status`: each job waiting for it waits on, is released, or is
-- cancelled naming it (rules.after_dependency); a cancelled batch releases nothing.
after_finish = function(d, base, jid, status, err, now, retention)
  local dk = base .. ':job:' .. jid .. ':dn'
  local waiting = redis.call('LRANGE', dk, 0, -1)
  if #waiting == 0 then return end
  redis.call('DEL', dk)
  for _, entry in ipairs(waiting) do
    local wid, any, name = string.match(entry, '^([^\t]+)\t([01])\t(.*)$')
    local wk = base .. ':job:' .. wid
    local v = redis.call('HMGET', wk, 'st', 'dl', 'm', 'wh', 'pu', 'ws', 'wl')
    if (v[1] or 'queued') == 'queued' and v[2] then
      local what, reason = rules.after_dependency(tonumber(v[2]), status, name, err or '', any == '1')
      if what == 'release' and redis.call('HGET', base .. ':batch:' .. batch_of(wid), 'cx') then
        what, reason = 'cancel', 'cancelled by request'
      end
      if what == 'wait' then
        redis.call('HINCRBY', wk, 'dl', -1)
      else
        redis.call('HDEL', wk, 'dl', 'ws', 'wl')
        if what == 'release' then
          release(d, base, wid, v[3] or '_', v[6], v[7], v[5] == '1')
        else
          finish(d, base, wid, 'queued', 'cancelled', reason, nil, now, retention, nil, nil, v[4])
        end
      end
    end
  end
end

-- Appends one retry or deferral to a job's log (newest last, at most max entries).
local function log_attempt(rk, now, err, counted, max)
  local entry = cjson.encode({at_ms = now, error = err, counted = counted})
  local log = redis.call('HGET', rk, 'log')
  if log then
    log = log .. '\n' .. entry
    local n = select(2, string.gsub(log, '\n', '')) + 1
    while n > max do
      log = string.sub(log, string.find(log, '\n', 1, true) + 1)
      n = n - 1
    end
  else
    log = entry
  end
  redis.call('HSET', rk, 'log', log)
end

-- After flush(): stamps last_ms on every touched batch and completes those that are
-- done. `touched` maps batch key -> caller's tag; returns the tags of completed ones.
local function settle_batches(touched, now, retention)
  local completed = {}
  for bk, tag in pairs(touched) do
    redis.call('HSET', bk, 'last_ms', now)
    if maybe_complete(bk, now, retention) == 1 then completed[#completed + 1] = tag end
  end
  return completed
end

local function dead_letter(dlq, jid, reason, now)
  redis.call('XADD', dlq, 'MAXLEN', '~', 100000, '*', 'j', jid, 'reason', reason, 'at', now)
end

-- Puts a job back in its lane's stream as a new entry (status queued).
local function requeue(d, base, jid, from, lane)
  local rk = base .. ':job:' .. jid
  redis.call('HSET', rk, 'st', 'queued')
  redis.call('HDEL', rk, 'e', 'w')
  if from ~= 'queued' then move(d, base, jid, from, 'queued', lane) end
  local urgent = redis.call('HGET', rk, 'pu') == '1'
  redis.call('XADD', urgent and urgent_stream(base, lane) or lane_stream(base, lane), '*', 'j', jid)
  bump(d, lane_key(base, lane), 'qd', 1)
end

-- The minute window of a lane's 429 rate: rolls it when a minute has passed and
-- returns the field names to count into.
local function roll_window(lk, now)
  local v = redis.call('HMGET', lk, 'wst', 'w429', 'wok', 'p429', 'pok')
  local w = {start = tonumber(v[1] or '0'), throttled = tonumber(v[2] or '0'),
    answered = tonumber(v[3] or '0'), prev_throttled = tonumber(v[4] or '0'),
    prev_answered = tonumber(v[5] or '0')}
  local r = rules.roll_window(w, now)
  if r.start ~= w.start then
    redis.call('HSET', lk, 'wst', r.start, 'w429', r.throttled, 'wok', r.answered,
      'p429', r.prev_throttled, 'pok', r.prev_answered)
  end
end
