"""The Lua scripts of the Redis store (see docs/store-redis.md for the key layout).

Each script runs atomically on the server: no other client sees a half-done batch, and
one script call is one round trip. Scripts build per-job key names from the prefix
(``ARGV[1]``) rather than receiving every key in ``KEYS``, so the store needs one Redis
node (or, on a cluster, a prefix with a hash tag such as ``{horae}``, which puts every
key in one slot).

Times are integers of microseconds since the Unix epoch, passed and stored as decimal
strings: a double holds them exactly (until the year 2255), while Lua's number-to-string
conversion (``%.14g``) would round them, so the scripts only ever compare them with
``tonumber`` and write back the strings they were given.

Job hash fields: ``payload``, ``nrt`` (next run time; ``""`` when paused; the hash of a
job that exists always has both), ``holder``, ``exp``, ``ltoken``, ``lnrt`` (lease holder,
expiry, token, and the next run time when leased; present only while leased),
``running`` (in-flight runs; absent when 0), ``run_count`` (runs started so far; absent
when 0, layout version 3). A removed job whose lease or runs are still out keeps a hash
with only ``running`` and the lease fields until those come back; Redis deletes a hash
when its last field goes.

In-flight runs are leased (layout version 2): ``{prefix}:runleases`` is a sorted set of
run ids by lease expiry, and ``{prefix}:runholders`` a hash of run id to the holder and
the job id, written as ``<byte length of holder>:<holder><job id>`` (any scheduler id and
job id fit, and Lua checks the holder with one prefix comparison). Both have an entry for
exactly the runs in ``{prefix}:inflight:<job id>``.

Held jobs (layout version 3, ``Release.hold_while_running``) are in the set
``{prefix}:held`` and not in the due set; their ``nrt`` stays. A held job is never
leased: a release holds it, and a finish without a retry (which frees it and puts it
back in the due set), an update, a replacement or a removal takes it out of the set.
The release decides to hold from the job's ``running`` in the same script that writes
it, and a finish lowers ``running`` and frees the job in one script: since scripts run
one at a time, no job stays held with fewer runs in flight than its hold number.

The register of schedulers (``Store.heartbeat``) is two keys of its own:
``{prefix}:schedulers``, a hash of scheduler id to its record (JSON: host, pid, state,
version, and the times ``started_at``, ``heartbeat_at``, ``expires_at`` as strings of
microseconds), and ``{prefix}:heartbeats``, a sorted set of scheduler id by record
expiry, so that a heartbeat finds the stale records without reading every one. Both have
an entry for exactly the same ids. The lease counts that ``get_schedulers`` reports are
never stored: they are counted from ``{prefix}:leases`` and ``{prefix}:runleases`` when
read. No script of the jobs reads or writes these keys, so the register did not change
the layout version: a horae of layout 3 that predates it ignores them.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "ADD",
    "CLAIM",
    "EXTEND",
    "FINISH",
    "HEARTBEAT",
    "IN_FLIGHT",
    "JOB_IDS",
    "LATEST",
    "LIST",
    "RELEASE",
    "REMOVE",
    "REMOVE_ALL",
    "REMOVE_IDLE",
    "SCHEDULERS",
    "UPDATE",
    "UPGRADE",
    "UPGRADE_3",
]

# Redis's Lua passes at most 8000 values through one unpack(): index writes gathered
# over a batch go out in commands of at most 4000 arguments (2000 pairs).
_FLUSH = """
local function flush(command, key, args)
  for i = 1, #args, 4000 do
    redis.call(command, key, unpack(args, i, math.min(i + 3999, #args)))
  end
end
"""

# KEYS: due, jobs, held. ARGV: prefix, sender, replace ("1"/"0"), then (id, nrt,
# payload)*. Returns the first id that exists already (nothing written), or nil. A
# replaced job keeps its run count and is no longer held.
ADD = """
local prefix = ARGV[1]
local holding = redis.call('SCARD', KEYS[3]) > 0
local n = #ARGV
if ARGV[3] ~= '1' then
  for i = 4, n, 3 do
    if redis.call('HEXISTS', prefix .. ':job:' .. ARGV[i], 'nrt') == 1 then
      return ARGV[i]
    end
  end
end
for i = 4, n, 3 do
  local id, nrt = ARGV[i], ARGV[i + 1]
  local key = prefix .. ':job:' .. id
  redis.call('HSET', key, 'payload', ARGV[i + 2], 'nrt', nrt)
  redis.call('SADD', KEYS[2], id)
  if holding then
    redis.call('SREM', KEYS[3], id)
  end
  -- A leased job goes back to the due set when its lease is released or expires.
  if redis.call('HEXISTS', key, 'ltoken') == 0 then
    if nrt == '' then
      redis.call('ZREM', KEYS[1], id)
    else
      redis.call('ZADD', KEYS[1], nrt, id)
    end
  end
end
redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
return false
"""

# KEYS: due, held. ARGV: prefix, sender, id, nrt, payload. Returns 1, or 0 if there is
# no job. An updated job keeps its run count and is no longer held.
UPDATE = """
local prefix, id, nrt = ARGV[1], ARGV[3], ARGV[4]
local key = prefix .. ':job:' .. id
if redis.call('HEXISTS', key, 'nrt') == 0 then
  return 0
end
redis.call('HSET', key, 'payload', ARGV[5], 'nrt', nrt)
redis.call('SREM', KEYS[2], id)
if redis.call('HEXISTS', key, 'ltoken') == 0 then
  if nrt == '' then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], nrt, id)
  end
end
redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
return 1
"""

# KEYS: due, jobs, held. ARGV: prefix, sender, id. Returns 1, or 0 if there is no job.
# The job's run count goes with it.
REMOVE = """
local prefix, id = ARGV[1], ARGV[3]
if redis.call('HDEL', prefix .. ':job:' .. id, 'payload', 'nrt', 'run_count') == 0 then
  return 0
end
redis.call('SREM', KEYS[2], id)
redis.call('ZREM', KEYS[1], id)
redis.call('SREM', KEYS[3], id)
redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
return 1
"""

# KEYS: due, jobs, held. ARGV: prefix, sender. Returns how many jobs were removed.
REMOVE_ALL = """
local prefix = ARGV[1]
local ids = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(ids) do
  redis.call('HDEL', prefix .. ':job:' .. id, 'payload', 'nrt', 'run_count')
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
return #ids
"""

# KEYS: jobs. ARGV: prefix. Returns (id, nrt, payload)* of every job.
LIST = """
local prefix = ARGV[1]
local reply = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HMGET', prefix .. ':job:' .. id, 'nrt', 'payload')
  if fields[1] then
    reply[#reply + 1] = id
    reply[#reply + 1] = fields[1]
    reply[#reply + 1] = fields[2]
  end
end
return reply
"""

# KEYS: jobs. Returns the ids of every job as a JSON array, reading no job: one bulk
# string parses much faster in Python than a reply of thousands of strings.
JOB_IDS = """
local ids = redis.call('SMEMBERS', KEYS[1])
if #ids == 0 then
  return '[]'
end
return cjson.encode(ids)
"""

# KEYS: run holders. ARGV: prefix. Returns the records of every run in flight, removed
# jobs' too: the in-flight hash of each job named in run holders is read once, whatever
# the number of its runs (an index entry whose run is gone adds nothing). The caller
# sorts them: the scheduled times are written with their own UTC offsets, so the strings
# do not sort as the times do.
IN_FLIGHT = """
local prefix = ARGV[1]
local seen = {}
local reply = {}
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  local colon = string.find(value, ':', 1, true)
  local id = string.sub(value, colon + tonumber(string.sub(value, 1, colon - 1)) + 1)
  if not seen[id] then
    seen[id] = true
    for _, text in ipairs(redis.call('HVALS', prefix .. ':inflight:' .. id)) do
      reply[#reply + 1] = text
    end
  end
end
return reply
"""

# ARGV: prefix, then job ids. Returns, for each id with a run (removed jobs' too), the
# id, the number n of its runs in flight and their n records; or, with none in flight,
# the id, 0 and the record of its newest finished run. The caller picks the latest
# scheduled of the runs in flight, as get_runs orders them.
LATEST = """
local prefix = ARGV[1]
local reply = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local texts = redis.call('HVALS', prefix .. ':inflight:' .. id)
  if #texts > 0 then
    reply[#reply + 1] = id
    reply[#reply + 1] = #texts
    for _, text in ipairs(texts) do
      reply[#reply + 1] = text
    end
  else
    local text = redis.call('LINDEX', prefix .. ':runs:' .. id, 0)
    if text then
      reply[#reply + 1] = id
      reply[#reply + 1] = 0
      reply[#reply + 1] = text
    end
  end
end
return reply
"""

# KEYS: due, leases, token counter. ARGV: prefix, now, lease expiry, limit, holder.
# Expired leases first go back to the due set (at most 1000 per call, to bound the time
# one call holds the server); then the earliest due jobs are leased.
# Returns a JSON array of [id, payload, nrt, token, running, run count] of the leased jobs,
# earliest first: one bulk string parses much faster in Python than nested replies.
ACQUIRE = """
local prefix, now, expires, holder = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  local key = prefix .. ':job:' .. id
  redis.call('HDEL', key, 'holder', 'exp', 'ltoken', 'lnrt')
  local nrt = redis.call('HGET', key, 'nrt')
  if nrt and nrt ~= '' then
    redis.call('ZADD', KEYS[1], nrt, id)
  end
end
if #expired > 0 then
  redis.call('ZREM', KEYS[2], unpack(expired))
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local n = #ids
if n == 0 then
  return '[]'
end
-- ids are the n lowest-scored members: ranks 0 .. n - 1.
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
local first = redis.call('INCRBY', KEYS[3], n) - n
local reply = {}
for i, id in ipairs(ids) do
  local key = prefix .. ':job:' .. id
  local fields = redis.call('HMGET', key, 'payload', 'nrt', 'running', 'run_count')
  if fields[2] then
    local token = tostring(first + i)
    redis.call('HSET', key, 'holder', holder, 'exp', expires, 'ltoken', token, 'lnrt', fields[2])
    redis.call('ZADD', KEYS[2], expires, id)
    reply[#reply + 1] = {id, fields[1] or '', fields[2], token, fields[3] or '0', fields[4] or '0'}
  end
end
if #reply == 0 then
  return '[]'
end
return cjson.encode(reply)
"""

# KEYS: due, leases, jobs, run leases, run holders, held. ARGV: prefix, sender,
# retention, a JSON array with one [id, token, next run time ('' = none), remove (1/0),
# [[run id, run record], ...] of the started runs, [run record, ...] of the finished
# runs, hold_while_running] per release (one string argument: packing thousands of
# separate ones costs the client more than the server), then the releasing scheduler's
# id. Started runs are held by it until the job's lease expiry (the ``exp`` the
# acquisition wrote, which is ``lease.expires_at``), and count in the job's run count.
# A job left with a next run time and at least hold_while_running (> 0) runs in flight
# is held instead of due. Returns the ids of releases whose token is not the job's
# current lease token, or whose job was removed while leased.
RELEASE = (
    _FLUSH
    + """
local prefix, retention = ARGV[1], tonumber(ARGV[3])
local owner = #ARGV[5] .. ':' .. ARGV[5]
local rejected = {}
local wake = false
local expiries, holders = {}, {}
for _, release in ipairs(cjson.decode(ARGV[4])) do
  local id, token, nrt = release[1], release[2], release[3]
  local key = prefix .. ':job:' .. id
  local leased = redis.call('HMGET', key, 'ltoken', 'lnrt', 'exp', 'nrt')
  if leased[1] ~= token then
    -- The lease expired and was taken over (or released already): change nothing.
    rejected[#rejected + 1] = id
  elseif not leased[4] then
    -- Removed while leased: none of this release applies; the lease goes with the job.
    redis.call('HDEL', key, 'holder', 'exp', 'ltoken', 'lnrt')
    redis.call('ZREM', KEYS[2], id)
    rejected[#rejected + 1] = id
  else
    redis.call('HDEL', key, 'holder', 'exp', 'ltoken', 'lnrt')
    redis.call('ZREM', KEYS[2], id)
    local stored = leased[4]
    local started, finished = release[5], release[6]
    local running = false
    if #started > 0 then
      local inflight = prefix .. ':inflight:' .. id
      for _, run in ipairs(started) do
        redis.call('HSET', inflight, run[1], run[2])
        expiries[#expiries + 1] = leased[3]
        expiries[#expiries + 1] = run[1]
        holders[#holders + 1] = run[1]
        holders[#holders + 1] = owner .. id
      end
      running = redis.call('HINCRBY', key, 'running', #started)
      -- A job removed while leased has no run count to keep.
      if stored then
        redis.call('HINCRBY', key, 'run_count', #started)
      end
    end
    if #finished > 0 and retention > 0 then
      local runs = prefix .. ':runs:' .. id
      for _, record in ipairs(finished) do
        redis.call('LPUSH', runs, record)
      end
      redis.call('LTRIM', runs, 0, retention - 1)
    end
    -- A stored next run time other than the leased one: the user rescheduled or paused
    -- the job meanwhile, and that change wins over this release.
    if stored and stored == leased[2] then
      if release[4] == 1 then
        redis.call('HDEL', key, 'payload', 'nrt', 'run_count')
        redis.call('SREM', KEYS[3], id)
        stored = false
      else
        redis.call('HSET', key, 'nrt', nrt)
        stored = nrt
      end
    end
    if stored and stored ~= '' then
      local hold = release[7]
      if hold > 0 and not running then
        running = tonumber(redis.call('HGET', key, 'running') or '0')
      end
      if hold > 0 and running >= hold then
        -- Held: out of the due set until a finish frees it (see FINISH).
        redis.call('SADD', KEYS[6], id)
      else
        redis.call('ZADD', KEYS[1], stored, id)
        -- Other schedulers counted this job at its lease expiry: wake them if sooner.
        if tonumber(stored) < tonumber(leased[3]) then
          wake = true
        end
      end
    end
  end
end
flush('ZADD', KEYS[4], expiries)
flush('HSET', KEYS[5], holders)
if wake then
  redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
end
return rejected
"""
)

# The removal of a job left with nothing to do (Store.finish_run's remove_finished_job,
# Store.remove_job_if_idle): as REMOVE, if the job has no next run time (so is not
# held), no lease and no run in flight. Returns whether it removed the job; the caller
# publishes the wake-up.
_REMOVE_IDLE = """
local function remove_idle(prefix, id, due, jobs, held)
  local key = prefix .. ':job:' .. id
  local fields = redis.call('HMGET', key, 'nrt', 'ltoken', 'running')
  if fields[1] ~= '' or fields[2] or fields[3] then
    return false
  end
  redis.call('HDEL', key, 'payload', 'nrt', 'run_count')
  redis.call('SREM', jobs, id)
  redis.call('ZREM', due, id)
  redis.call('SREM', held, id)
  return true
end
"""

# KEYS: due, jobs, held. ARGV: prefix, sender, id. Returns 1 if the job was removed
# (see _REMOVE_IDLE), else 0.
REMOVE_IDLE = (
    _REMOVE_IDLE
    + """
if remove_idle(ARGV[1], ARGV[3], KEYS[1], KEYS[2], KEYS[3]) then
  redis.call('PUBLISH', ARGV[1] .. ':wakeup', ARGV[2])
  return 1
end
return 0
"""
)

# KEYS: run leases, run holders, due, held, jobs. ARGV: prefix, retention, a JSON array
# of [job id, run id, run record] of runs that ended, each followed, for a retry, by [run
# id, run record, scheduler id, lease expiry] of the retry, or, to remove a job left
# with nothing to do, by false and 1 (runs ending at the same moment are recorded in one
# call), then the sender for wake-ups. A run that was not in flight is recorded only if
# its id is not in the history already (another scheduler claimed it and recorded it
# first), and its retry is ignored. A run that leaves flight without a retry frees its
# job if held: the job goes back in the due set (unless leased, which a held job never
# is), and the other schedulers are woken. A job to remove goes as with REMOVE if it
# has no next run time (so is not held), no lease and no run in flight. Returns the ids
# of the jobs removed.
FINISH = (
    _FLUSH
    + _REMOVE_IDLE
    + """
local prefix, retention = ARGV[1], tonumber(ARGV[2])
-- One O(1) check per batch: with no job held, finishes never look for holds.
local holding = redis.call('SCARD', KEYS[4]) > 0
local freed = false
local done = {}
local removed = {}
local function record(runs, text)
  redis.call('LPUSH', runs, text)
  redis.call('LTRIM', runs, 0, retention - 1)
end
for _, run in ipairs(cjson.decode(ARGV[3])) do
  local id, run_id, retry = run[1], run[2], run[4]
  local inflight = prefix .. ':inflight:' .. id
  local runs = prefix .. ':runs:' .. id
  if redis.call('HDEL', inflight, run_id) == 1 then
    done[#done + 1] = run_id
    if retry then
      -- The retry takes the run's place: the job's count of runs in flight stays, and
      -- so does its hold.
      redis.call('HSET', inflight, retry[1], retry[2])
      redis.call('ZADD', KEYS[1], retry[4], retry[1])
      redis.call('HSET', KEYS[2], retry[1], #retry[3] .. ':' .. retry[3] .. id)
    else
      local key = prefix .. ':job:' .. id
      if redis.call('HINCRBY', key, 'running', -1) <= 0 then
        redis.call('HDEL', key, 'running')
      end
      if holding and redis.call('SREM', KEYS[4], id) == 1 then
        local fields = redis.call('HMGET', key, 'nrt', 'ltoken')
        if fields[1] and fields[1] ~= '' and not fields[2] then
          redis.call('ZADD', KEYS[3], fields[1], id)
        end
        freed = true
      end
    end
    if retention > 0 then
      record(runs, run[3])
    end
  elseif retention > 0 then
    -- Not in flight: recorded already if another scheduler claimed it and ended it (the
    -- record starts with its id, see RedisStore._encode_run); the first record stays.
    local head = '{"id":"' .. run_id .. '"'
    local seen = false
    for _, text in ipairs(redis.call('LRANGE', runs, 0, -1)) do
      if string.sub(text, 1, #head) == head then
        seen = true
        break
      end
    end
    if not seen then
      record(runs, run[3])
    end
  end
  if run[5] == 1 and remove_idle(prefix, id, KEYS[3], KEYS[5], KEYS[4]) then
    removed[#removed + 1] = id
  end
end
if #done > 0 then
  flush('ZREM', KEYS[1], done)
  flush('HDEL', KEYS[2], done)
end
if freed or #removed > 0 then
  redis.call('PUBLISH', prefix .. ':wakeup', ARGV[4])
end
return removed
"""
)

# KEYS: run leases, run holders. ARGV: holder, lease expiry, then run ids. Renews the
# runs held by holder; returns the ids among them that are not.
EXTEND = """
local owner = #ARGV[1] .. ':' .. ARGV[1]
local expires = ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local value = redis.call('HGET', KEYS[2], ARGV[i])
  if value and string.sub(value, 1, #owner) == owner then
    redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS: run leases, run holders. ARGV: prefix, holder, now, new lease expiry, limit.
# Takes over the runs whose lease expired at or before now, oldest first; returns their
# in-flight records. An index entry without its run (a run ended by horae of layout 1,
# which knew no index) is dropped on the way.
CLAIM = """
local prefix, now, expires = ARGV[1], ARGV[3], ARGV[4]
local owner = #ARGV[2] .. ':' .. ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local claimed = {}
for _, run_id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[2], run_id)
  local text = false
  local id
  if value then
    local colon = string.find(value, ':', 1, true)
    id = string.sub(value, colon + tonumber(string.sub(value, 1, colon - 1)) + 1)
    text = redis.call('HGET', prefix .. ':inflight:' .. id, run_id)
  end
  if text then
    redis.call('ZADD', KEYS[1], expires, run_id)
    redis.call('HSET', KEYS[2], run_id, owner .. id)
    claimed[#claimed + 1] = text
  else
    redis.call('ZREM', KEYS[1], run_id)
    redis.call('HDEL', KEYS[2], run_id)
  end
end
return claimed
"""

# KEYS: schedulers, heartbeats. ARGV: scheduler id, record (JSON), record expiry, cutoff.
# Writes the scheduler's record, after dropping the records that expired before cutoff
# (the heartbeat's time minus SCHEDULER_RECORD_KEEP). Publishes nothing: no job changed.
# Returns the number of records dropped.
HEARTBEAT = (
    _FLUSH
    + """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
if #stale > 0 then
  flush('HDEL', KEYS[1], stale)
  flush('ZREM', KEYS[2], stale)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return #stale
"""
)

# KEYS: schedulers, leases, run leases, run holders. ARGV: prefix, now. Returns (id,
# record, job leases, run leases)* of every scheduler record. The leases counted are
# those that expire after now: of jobs, in the leases sorted set, held by the job hash's
# ``holder`` (a job removed while leased has no ``nrt`` and holds nothing any more, as on
# the other stores); of runs, in the run leases sorted set, held by the holder written in
# run holders. Only what is leased now is read, never every job nor every run; with no
# record, nothing at all.
SCHEDULERS = """
local records = redis.call('HGETALL', KEYS[1])
if #records == 0 then
  return records
end
local prefix, after = ARGV[1], '(' .. ARGV[2]
local jobs, runs = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], after, '+inf')) do
  local fields = redis.call('HMGET', prefix .. ':job:' .. id, 'holder', 'nrt')
  local holder = fields[1]
  if holder and fields[2] then
    jobs[holder] = (jobs[holder] or 0) + 1
  end
end
for _, run_id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], after, '+inf')) do
  local value = redis.call('HGET', KEYS[4], run_id)
  if value then
    local colon = string.find(value, ':', 1, true)
    local holder = string.sub(value, colon + 1, colon + tonumber(string.sub(value, 1, colon - 1)))
    runs[holder] = (runs[holder] or 0) + 1
  end
end
local reply = {}
for i = 1, #records, 2 do
  local id = records[i]
  reply[#reply + 1] = id
  reply[#reply + 1] = records[i + 1]
  reply[#reply + 1] = jobs[id] or 0
  reply[#reply + 1] = runs[id] or 0
end
return reply
"""

# KEYS: version, run leases, run holders. ARGV: prefix, then job ids whose in-flight
# runs to index. Upgrades layout 1 to 2: the in-flight runs of layout 1 have no lease;
# they enter the index held by nobody, expired since 1970, so that the first claim
# takes them over (see docs/store-redis.md, "Upgrades"). Returns the number of runs
# indexed, or -1 if the layout is not version 1 (upgraded already).
UPGRADE = """
if redis.call('GET', KEYS[1]) ~= '1' then
  return -1
end
local prefix = ARGV[1]
local ids = {}
for i = 2, #ARGV do
  ids[ARGV[i]] = true
end
for _, id in ipairs(redis.call('SMEMBERS', prefix .. ':jobs')) do
  ids[id] = true
end
local count = 0
for id in pairs(ids) do
  local run_ids = redis.call('HKEYS', prefix .. ':inflight:' .. id)
  for _, run_id in ipairs(run_ids) do
    if redis.call('HSETNX', KEYS[3], run_id, '0:' .. id) == 1 then
      redis.call('ZADD', KEYS[2], 0, run_id)
      count = count + 1
    end
  end
end
redis.call('SET', KEYS[1], '2')
return count
"""

# KEYS: version. Upgrades layout 2 to 3, which added the run count of each job (a job
# hash without ``run_count`` has started none, as far as layout 3 knows) and the set of
# held jobs (empty: layout 2 held none). Nothing else to write. Returns 0, or -1 if the
# layout is not version 2 (upgraded already).
UPGRADE_3 = """
if redis.call('GET', KEYS[1]) ~= '2' then
  return -1
end
redis.call('SET', KEYS[1], '3')
return 0
"""
