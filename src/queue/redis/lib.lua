-- Shared by every script (prepended). A project's keys all start with `base`
-- ("<prefix>:{p:<project>}"), so they hash to one Cluster slot.
-- Job records:   base..':job:'..id     (hash, fields in records.rs job_fields)
-- Batch records: base..':batch:'..id   (hash, counters per status)
-- Project counts: base..':counts'      (hash, counters per status)

local function batch_of(jid)
  return string.match(jid, '^(.+)%.%d+$')
end

-- Moves one job from status `from` to `to` in the project and batch counters.
local function move(base, jid, from, to)
  local counts = base .. ':counts'
  redis.call('HINCRBY', counts, from, -1)
  redis.call('HINCRBY', counts, to, 1)
  local b = batch_of(jid)
  if b then
    local bk = base .. ':batch:' .. b
    redis.call('HINCRBY', bk, from, -1)
    redis.call('HINCRBY', bk, to, 1)
  end
end

-- Completes the batch if every job is terminal and the batch is sealed; returns 1 for
-- the one caller that completes it (HSETNX), else 0.
local function maybe_complete(bk, now, retention)
  local v = redis.call('HMGET', bk, 'total', 'done')
  if not v[1] then return 0 end
  if tonumber(v[2] or '0') < tonumber(v[1]) then return 0 end
  if redis.call('HSETNX', bk, 'completed_ms', now) == 1 then
    redis.call('EXPIRE', bk, retention)
    redis.call('EXPIRE', bk .. ':fail', retention)
    return 1
  end
  return 0
end

-- Terminal transition of job `jid` from status `from`. Returns 1 if it completed the
-- job's batch.
local function finish(base, jid, from, status, err, res, now, retention)
  local rk = base .. ':job:' .. jid
  redis.call('HSET', rk, 'st', status, 't2', now)
  if err and err ~= '' then redis.call('HSET', rk, 'err', err) end
  if res and res ~= '' then redis.call('HSET', rk, 'res', res) end
  redis.call('HDEL', rk, 'spec', 'e', 'cx', 'dlv')
  redis.call('EXPIRE', rk, retention)
  move(base, jid, from, status)
  local b = batch_of(jid)
  if not b then return 0 end
  local bk = base .. ':batch:' .. b
  redis.call('HINCRBY', bk, 'done', 1)
  redis.call('HSET', bk, 'last_ms', now)
  if status ~= 'succeeded' then
    redis.call('LPUSH', bk .. ':fail', jid)
    redis.call('LTRIM', bk .. ':fail', 0, 999)
  end
  return maybe_complete(bk, now, retention)
end

local function dead_letter(dlq, jid, reason, now)
  redis.call('XADD', dlq, 'MAXLEN', '~', 100000, '*', 'j', jid, 'reason', reason, 'at', now)
end

-- Puts a job back in the stream as a new entry (status queued).
local function requeue(base, stream, jid, from)
  local rk = base .. ':job:' .. jid
  redis.call('HSET', rk, 'st', 'queued')
  redis.call('HDEL', rk, 'e', 'w')
  if from ~= 'queued' then move(base, jid, from, 'queued') end
  redis.call('XADD', stream, '*', 'j', jid)
end
