"""The Lua scripts of the Redis session store (store/redis_sessions.py): each is one atomic step.

Conventions: times arrive as text Python wrote (``repr`` of a float) and are stored as they came,
never re-printed by Lua (whose tostring keeps only 14 digits); numbers compared in Lua are parsed
with ``tonumber``. A script that meets a record it cannot read stops with an error starting with
DAMAGED (or Redis's own WRONGTYPE), which the store raises as a StoreError.
"""

from __future__ import annotations

__all__ = [
    "COUNT",
    "CREATE",
    "DELETE",
    "DELETE_ALL",
    "DELETE_USER",
    "LIST",
    "RECORD_FAILURE",
    "RELEASE",
    "RESERVE",
    "TOUCH",
]

# A number read from a session record, or the script stops with an error naming the damage.
# (tonumber alone would take "nan" and "inf".)
_NUMBER = """
local function finite(value)
  local n = tonumber(value)
  return n ~= nil and n == n and n ~= math.huge and n ~= -math.huge
end
local function number(value)
  if not finite(value) then error({err = 'DAMAGED session record'}) end
  return tonumber(value)
end
"""

# KEYS: session, user set, index, stream. ARGV: id_hash, user_id, now, client, user_agent,
# persistent, binding, ttl, maxlen, mfa. Returns the stream entry's id, or nil when the id is taken.
# (Redis does not undo a script's writes when it fails half-way: the writes that can meet a
# damaged key come before the session itself.)
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'created_at', ARGV[3], 'auth_time', ARGV[3],
           'last_seen', ARGV[3], 'client', ARGV[4], 'user_agent', ARGV[5], 'persistent', ARGV[6],
           'binding', ARGV[7], 'mfa', ARGV[10])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[9], '*', 'change', 'create')
"""

# KEYS: index. ARGV: prefix, ttl, then id_hash, now pairs. last_seen never moves back; a record
# that is not a readable session is left alone (reading it is an error anyway).
TOUCH = _NUMBER + """
for i = 3, #ARGV, 2 do
  local id, seen = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. 'session:' .. id
  if redis.call('TYPE', key).ok == 'hash' then
    local row = redis.call('HMGET', key, 'last_seen', 'user_id')
    if finite(row[1]) and row[2] then
      if number(seen) > number(row[1]) then
        redis.call('HSET', key, 'last_seen', seen)
        redis.call('ZADD', KEYS[1], seen, id)
      end
      redis.call('EXPIRE', key, ARGV[2])
      redis.call('EXPIRE', ARGV[1] .. 'user:' .. row[2], ARGV[2])
    end
  end
end
return 0
"""

# KEYS: session, index, stream. ARGV: id_hash, prefix, maxlen. A damaged record is deleted too.
DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return false end
if kind == 'hash' then
  local user = redis.call('HGET', KEYS[1], 'user_id')
  if user then redis.call('SREM', ARGV[2] .. 'user:' .. user, ARGV[1]) end
end
redis.call('DEL', KEYS[1])
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'change', 'delete')
"""

# KEYS: user set, index, stream. ARGV: id_hash to keep (or ""), prefix, maxlen. Returns {count}
# or {count, stream entry id}.
DELETE_USER = """
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[1] then
    n = n + redis.call('DEL', ARGV[2] .. 'session:' .. id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('SREM', KEYS[1], id)
  end
end
if n == 0 then return {0} end
return {n, redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'change', 'delete')}
"""

# KEYS: index, stream. ARGV: prefix, maxlen. Returns {count} or {count, stream entry id}.
DELETE_ALL = """
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. 'session:' .. id
  if redis.call('TYPE', key).ok == 'hash' then
    local user = redis.call('HGET', key, 'user_id')
    if user then redis.call('DEL', ARGV[1] .. 'user:' .. user) end
  end
  n = n + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
if n == 0 then return {0} end
return {n, redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'change', 'delete')}
"""

# One page of a listing, walked with ZSCAN (the index) or SSCAN (a user's set), so that no reply
# is too long to parse within the timeout and sessions created or ended meanwhile disturb nothing
# (a session may come twice: the caller keeps one). KEYS: the index or a user's set. ARGV: cursor,
# 'zset' | 'set', key prefix, id prefix ('' for all), page size. Returns {cursor, id_hash,
# {field, value, ...}, ...}; ids whose session expired are dropped from the set walked.
LIST = """
local command, step = 'SSCAN', 1
if ARGV[2] == 'zset' then command, step = 'ZSCAN', 2 end
local reply = redis.call(command, KEYS[1], ARGV[1], 'MATCH', ARGV[4] .. '*', 'COUNT', ARGV[5])
local found = {reply[1]}
for i = 1, #reply[2], step do
  local id = reply[2][i]
  local fields = redis.call('HGETALL', ARGV[3] .. 'session:' .. id)
  if #fields == 0 then
    redis.call(step == 2 and 'ZREM' or 'SREM', KEYS[1], id)
  else
    found[#found + 1] = id
    found[#found + 1] = fields
  end
end
return found
"""

# KEYS: index. ARGV: prefix, created_after, seen_after. Returns {user_id, count, ...}.
COUNT = _NUMBER + """
local counts, users = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], '+inf')) do
  local row = redis.call('HMGET', ARGV[1] .. 'session:' .. id, 'user_id', 'created_at', 'last_seen')
  if row[1] or row[2] or row[3] then
    if not row[1] then error({err = 'DAMAGED session record'}) end
    if number(row[2]) >= number(ARGV[2]) and number(row[3]) >= number(ARGV[3]) then
      if not counts[row[1]] then counts[row[1]] = 0; users[#users + 1] = row[1] end
      counts[row[1]] = counts[row[1]] + 1
    end
  end
end
local found = {}
for _, user in ipairs(users) do found[#found + 1] = user; found[#found + 1] = counts[user] end
return found
"""

# One failure counted on a counter: a counter quiet for longer than the window starts again from one.
_FAIL = """
local function fail(key, now, nowtext, window, ttl)
  local last = tonumber(redis.call('HGET', key, 'last'))
  if last and not (now - last > window) then
    redis.call('HINCRBY', key, 'failures', 1)
  else
    redis.call('HSET', key, 'failures', 1)
  end
  redis.call('HSET', key, 'last', nowtext)
  redis.call('PEXPIRE', key, ttl)
end
"""

# KEYS: counters. ARGV: now, window, ttl (ms).
RECORD_FAILURE = _FAIL + """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, key in ipairs(KEYS) do fail(key, now, ARGV[1], window, ARGV[3]) end
return 0
"""

# KEYS: counters. ARGV: now, window, ttl (ms), then free, base, cap for each key. BackOff.wait's
# arithmetic, in the same order: returns the wait as text (Lua would truncate a number to an
# integer), "0" when the attempt is admitted and one failure is counted on every key.
RESERVE = _FAIL + """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local free, base, cap = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  local state = redis.call('HMGET', key, 'failures', 'last')
  local failures, last = tonumber(state[1]), tonumber(state[2])
  if failures and last and not (now - last > window) and failures >= free then
    local delay = math.min(cap, base * 2 ^ math.min(failures - free, 30))
    wait = math.max(wait, last + delay - now)
  end
end
if wait > 0 then return string.format('%.17g', wait) end
for _, key in ipairs(KEYS) do fail(key, now, ARGV[1], window, ARGV[3]) end
return '0'
"""

# KEYS: counters. One failure taken back from each, never below zero.
RELEASE = """
for _, key in ipairs(KEYS) do
  local failures = tonumber(redis.call('HGET', key, 'failures'))
  if failures and failures > 0 then redis.call('HINCRBY', key, 'failures', -1) end
end
return 0
"""
