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
``running`` (in-flight runs; absent when 0). A removed job whose lease or runs are still
out keeps a hash without ``payload``/``nrt`` until those come back; Redis deletes a hash
when its last field goes.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "ADD", "FINISH", "LIST", "RELEASE", "REMOVE", "REMOVE_ALL", "UPDATE"]

# KEYS: due, jobs. ARGV: prefix, sender, replace ("1"/"0"), then (id, nrt, payload)*.
# Returns the first id that exists already (nothing written), or nil.
ADD = """
local prefix = ARGV[1]
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

# KEYS: due. ARGV: prefix, sender, id, nrt, payload. Returns 1, or 0 if there is no job.
UPDATE = """
local prefix, id, nrt = ARGV[1], ARGV[3], ARGV[4]
local key = prefix .. ':job:' .. id
if redis.call('HEXISTS', key, 'nrt') == 0 then
  return 0
end
redis.call('HSET', key, 'payload', ARGV[5], 'nrt', nrt)
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

# KEYS: due, jobs. ARGV: prefix, sender, id. Returns 1, or 0 if there is no job.
REMOVE = """
local prefix, id = ARGV[1], ARGV[3]
if redis.call('HDEL', prefix .. ':job:' .. id, 'payload', 'nrt') == 0 then
  return 0
end
redis.call('SREM', KEYS[2], id)
redis.call('ZREM', KEYS[1], id)
redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
return 1
"""

# KEYS: due, jobs. ARGV: prefix, sender. Returns how many jobs were removed.
REMOVE_ALL = """
local prefix = ARGV[1]
local ids = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(ids) do
  redis.call('HDEL', prefix .. ':job:' .. id, 'payload', 'nrt')
end
redis.call('DEL', KEYS[1], KEYS[2])
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

# KEYS: due, leases, token counter. ARGV: prefix, now, lease expiry, limit, holder.
# Expired leases first go back to the due set (at most 1000 per call, to bound the time
# one call holds the server); then the earliest due jobs are leased.
# Returns a JSON array of [id, payload, nrt, token, running] of the leased jobs,
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
  local fields = redis.call('HMGET', key, 'payload', 'nrt', 'running')
  if fields[2] then
    local token = tostring(first + i)
    redis.call('HSET', key, 'holder', holder, 'exp', expires, 'ltoken', token, 'lnrt', fields[2])
    redis.call('ZADD', KEYS[2], expires, id)
    reply[#reply + 1] = {id, fields[1] or '', fields[2], token, fields[3] or '0'}
  end
end
if #reply == 0 then
  return '[]'
end
return cjson.encode(reply)
"""

# KEYS: due, leases, jobs. ARGV: prefix, sender, retention, then a JSON array with one
# [id, token, next run time ('' = none), remove (1/0), [[run id, run record], ...] of
# the started runs, [run record, ...] of the finished runs] per release (one string
# argument: packing thousands of separate ones costs the client more than the server).
# Returns the ids of releases whose token is not the job's current lease token.
RELEASE = """
local prefix, retention = ARGV[1], tonumber(ARGV[3])
local rejected = {}
local wake = false
for _, release in ipairs(cjson.decode(ARGV[4])) do
  local id, token, nrt = release[1], release[2], release[3]
  local key = prefix .. ':job:' .. id
  local held = redis.call('HMGET', key, 'ltoken', 'lnrt', 'exp', 'nrt')
  if held[1] ~= token then
    -- The lease expired and was taken over (or released already): change nothing.
    rejected[#rejected + 1] = id
  else
    redis.call('HDEL', key, 'holder', 'exp', 'ltoken', 'lnrt')
    redis.call('ZREM', KEYS[2], id)
    local started, finished = release[5], release[6]
    if #started > 0 then
      local inflight = prefix .. ':inflight:' .. id
      for _, run in ipairs(started) do
        redis.call('HSET', inflight, run[1], run[2])
      end
      redis.call('HINCRBY', key, 'running', #started)
    end
    if #finished > 0 and retention > 0 then
      local runs = prefix .. ':runs:' .. id
      for _, record in ipairs(finished) do
        redis.call('LPUSH', runs, record)
      end
      redis.call('LTRIM', runs, 0, retention - 1)
    end
    local stored = held[4]
    -- A stored next run time other than the leased one: the user rescheduled or paused
    -- the job meanwhile, and that change wins over this release.
    if stored and stored == held[2] then
      if release[4] == 1 then
        redis.call('HDEL', key, 'payload', 'nrt')
        redis.call('SREM', KEYS[3], id)
        stored = false
      else
        redis.call('HSET', key, 'nrt', nrt)
        stored = nrt
      end
    end
    if stored and stored ~= '' then
      redis.call('ZADD', KEYS[1], stored, id)
      -- Other schedulers counted this job at its lease expiry: wake them if sooner.
      if tonumber(stored) < tonumber(held[3]) then
        wake = true
      end
    end
  end
end
if wake then
  redis.call('PUBLISH', prefix .. ':wakeup', ARGV[2])
end
return rejected
"""

# ARGV: prefix, retention, then a JSON array of [job id, run id, run record] of runs
# that ended (runs ending at the same moment are recorded in one call).
FINISH = """
local prefix, retention = ARGV[1], tonumber(ARGV[2])
for _, run in ipairs(cjson.decode(ARGV[3])) do
  local id = run[1]
  if redis.call('HDEL', prefix .. ':inflight:' .. id, run[2]) == 1 then
    local key = prefix .. ':job:' .. id
    if redis.call('HINCRBY', key, 'running', -1) <= 0 then
      redis.call('HDEL', key, 'running')
    end
  end
  if retention > 0 then
    local runs = prefix .. ':runs:' .. id
    redis.call('LPUSH', runs, run[3])
    redis.call('LTRIM', runs, 0, retention - 1)
  end
end
return 1
"""
