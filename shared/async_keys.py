"""The Redis keys and Lua scripts of asynchronous invocation (the pool's are in ``shared.keys``).

A stream per namespace carries its accepted events; each event lives in exactly one of two
places until it ends, and every move between them is one script:

- ``hp:async:events:{namespace}`` STREAM of ``id, fn, ns``: a namespace's events ready to run,
  one stream per namespace so a replica reads the namespaces in turn and one tenant's backlog
  never holds up another's. Main replicas read them as one consumer group (``hp-async``, made
  with the stream when its namespace queues its first event); an entry is pending on the replica
  that read it until that replica finishes, defers or retries the event (XACK + XDEL, so the
  stream holds only live entries). A replica renews its entries' idle time while it runs them;
  one silent for ``async_consumer_timeout_s`` is presumed dead and another takes its entries
  (XAUTOCLAIM).
- ``hp:async:delayed``              ZSET request id -> unix time it is due: retries waiting out
  their backoff, events deferred because async calls hold their share, and events taken from a
  dead replica, due when their function's timeout + grace has passed. MOVE_DUE puts them back.

Beside them:

- ``hp:async:inv:{request_id}``     HASH, the event's state: function, namespace, status (queued,
  running, succeeded, failed, expired), attempts, event, result or error, timestamps. No TTL until
  it ends, then ``async_result_ttl_s``.
- ``hp:async:queued:{namespace}``   ZSET request id -> accepted at: the namespace's events not yet
  ended (its depth, the age of its oldest; the queue limit counts it).
- ``hp:async:namespaces``           SET of namespaces that ever queued an event (for the status).
- ``hp:async:running:{function}`` and ``hp:async:running-ns:{namespace}``  ZSET request id ->
  deadline: async calls in flight, held to their share of the function's and the namespace's
  concurrency so synchronous calls always keep the rest.
- ``hp:async:idem:{function}:{sha256 of the key}``  STRING request id, ``async_idempotency_ttl_s``.
- ``hp:async:dead:{function}``      ZSET request id -> time it died, and
  ``hp:async:dead-items:{function}``  HASH request id -> JSON dead letter (reason, attempts' errors,
  event); kept ``async_dead_letter_ttl_s``.
- ``hp:async:epoch``                STRING: a random value set once. A Redis that comes back
  without it lost its data (no persistence, or a failover to a replica that had not synced):
  Main logs it as an error instead of finding "nothing to do".
"""

from __future__ import annotations

STREAM_PREFIX = "hp:async:events:"
GROUP = "hp-async"
DELAYED = "hp:async:delayed"
NAMESPACES = "hp:async:namespaces"
EPOCH = "hp:async:epoch"
PREFIX = "hp:async:"
INV_PREFIX = "hp:async:inv:"

# statuses an event ends in; "queued" and "running" are the live ones
FINAL = ("succeeded", "failed", "expired")


def stream(namespace: str) -> str:
    return f"{STREAM_PREFIX}{namespace}"


def inv(request_id: str) -> str:
    return f"{INV_PREFIX}{request_id}"


def queued(namespace: str) -> str:
    return f"{PREFIX}queued:{namespace}"


def running(function: str) -> str:
    return f"{PREFIX}running:{function}"


def running_ns(namespace: str) -> str:
    return f"{PREFIX}running-ns:{namespace}"


def idem(function: str, digest: str) -> str:
    return f"{PREFIX}idem:{function}:{digest}"


def dead(function: str) -> str:
    return f"{PREFIX}dead:{function}"


def dead_items(function: str) -> str:
    return f"{PREFIX}dead-items:{function}"


# KEYS: inv, queued(ns), stream(ns), NAMESPACES, idem (any name when there is no key)
# ARGV: request id, now, queue limit (0 = none), has idempotency key (1/0), idempotency TTL s,
#       namespace, function, fields as JSON
# -> {"accepted", id} | {"duplicate", first id} | {"full", ""}
ACCEPT = """
if ARGV[4] == '1' then
  local first = redis.call('GET', KEYS[5])
  if first then return {'duplicate', first} end
end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then return {'full', ''} end
for name, value in pairs(cjson.decode(ARGV[8])) do
  redis.call('HSET', KEYS[1], name, value)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if redis.call('SADD', KEYS[4], ARGV[6]) == 1 then
  redis.pcall('XGROUP', 'CREATE', KEYS[3], 'hp-async', '0', 'MKSTREAM')
end
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1], 'fn', ARGV[7], 'ns', ARGV[6])
if ARGV[4] == '1' then redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[5]) end
return {'accepted', ARGV[1]}
"""

# An attempt begins. KEYS: inv, stream(ns), running(fn), running_ns(ns), DELAYED
# ARGV: entry id, request id, now, consumer, fn share, ns share, defer s, lease grace s,
#       function timeout s
# -> {"run", attempt, fields...} | {"gone"} (ended, or its state is lost) | {"busy"} (deferred:
#    async calls hold their share) | {"later"} (another attempt may still run: deferred to its
#    deadline)
START = """
local function drop()
  redis.call('XACK', KEYS[2], 'hp-async', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
end
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'status', 'deadline')
if state[1] ~= 'queued' and state[1] ~= 'running' then drop() return {'gone'} end
if state[1] == 'running' and state[2] and tonumber(state[2]) > now then
  drop()
  redis.call('ZADD', KEYS[5], state[2], ARGV[2])
  return {'later'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5])
    or redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then
  drop()
  redis.call('HSET', KEYS[1], 'status', 'queued')
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[7]), ARGV[2])
  return {'busy'}
end
local deadline = now + tonumber(ARGV[9]) + tonumber(ARGV[8])
redis.call('ZADD', KEYS[3], deadline, ARGV[2])
redis.call('ZADD', KEYS[4], deadline, ARGV[2])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3], 'deadline', deadline,
  'consumer', ARGV[4])
local reply = {'run', attempt}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields do reply[#reply + 1] = fields[i] end
return reply
"""

# An attempt ends. KEYS: inv, stream(ns), running(fn), running_ns(ns), queued(ns), DELAYED,
#   dead(fn), dead_items(fn), destination inv (any name when there is none)
# ARGV: entry id, request id, attempt, outcome (retry | succeeded | failed | expired), now,
#   due (retry), result TTL s, fields as JSON, dead letter JSON ("" = none), dead letter TTL s,
#   destination fields as JSON ("" = none), destination request id
# -> 1, or 0 when the attempt is stale (the event was claimed and run again meanwhile, or ended)
FINISH = """
local state = redis.call('HMGET', KEYS[1], 'status', 'attempts')
redis.call('XACK', KEYS[2], 'hp-async', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
if state[1] ~= 'running' or state[2] ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
for name, value in pairs(cjson.decode(ARGV[8])) do
  redis.call('HSET', KEYS[1], name, value)
end
if ARGV[4] == 'retry' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'next_at', ARGV[6])
  redis.call('ZADD', KEYS[6], ARGV[6], ARGV[2])
  return 1
end
local now = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'finished_at', ARGV[5])
-- the event itself is kept only in its dead letter, if it has one
redis.call('HDEL', KEYS[1], 'next_at', 'deadline', 'event')
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[7])))
redis.call('ZREM', KEYS[5], ARGV[2])
if ARGV[9] ~= '' then
  redis.call('ZADD', KEYS[7], now, ARGV[2])
  redis.call('HSET', KEYS[8], ARGV[2], ARGV[9])
  local old = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now - tonumber(ARGV[10]))
  for _, id in ipairs(old) do redis.call('HDEL', KEYS[8], id) end
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - tonumber(ARGV[10]))
end
if ARGV[11] ~= '' then
  local fields = cjson.decode(ARGV[11])
  for name, value in pairs(fields) do redis.call('HSET', KEYS[9], name, value) end
  redis.call('ZADD', KEYS[5], now, ARGV[12])
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[12], 'fn', fields['function'],
    'ns', fields['namespace'])
end
return 1
"""

# Due events back into their namespace's stream. KEYS: DELAYED  ARGV: now, most to move -> moved
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local f = redis.call('HMGET', 'hp:async:inv:' .. id, 'function', 'namespace')
  if f[1] then
    redis.call('XADD', 'hp:async:events:' .. f[2], '*', 'id', id, 'fn', f[1], 'ns', f[2])
  end
end
return #due
"""

# An entry read beyond this replica's free slots goes back, due at once (MOVE_DUE re-adds it).
# KEYS: stream(ns), DELAYED  ARGV: entry id, request id, now
DEFER = """
redis.call('XACK', KEYS[1], 'hp-async', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""

# Take the entries of a replica presumed dead and defer each to its attempt's deadline (its
# function's timeout + grace after it began), so a call that may still be running in a container
# is never run twice at once. KEYS: stream(ns), DELAYED  ARGV: consumer, min idle ms, now, count
# -> the request ids taken
RECLAIM = """
local claimed = redis.call('XAUTOCLAIM', KEYS[1], 'hp-async', ARGV[1], ARGV[2], '0-0',
  'COUNT', ARGV[4])
local now = tonumber(ARGV[3])
local taken = {}
for _, entry in ipairs(claimed[2]) do
  local fields = entry[2]
  local id
  for i = 1, #fields, 2 do if fields[i] == 'id' then id = fields[i + 1] end end
  redis.call('XACK', KEYS[1], 'hp-async', entry[1])
  redis.call('XDEL', KEYS[1], entry[1])
  if id then
    local inv = 'hp:async:inv:' .. id
    local deadline = tonumber(redis.call('HGET', inv, 'deadline') or now)
    if redis.call('EXISTS', inv) == 1 then
      redis.call('HINCRBY', inv, 'reclaimed', 1)
      redis.call('ZADD', KEYS[2], math.max(now, deadline), id)
      taken[#taken + 1] = id
    end
  end
end
return taken
"""

# Back into the queue from the dead letters. KEYS: dead(fn), dead_items(fn), inv, queued(ns),
# stream(ns)  ARGV: request id, now, fields as JSON -> 1, or 0 when it is not a dead letter
REDRIVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local fields = cjson.decode(ARGV[3])
redis.call('PERSIST', KEYS[3])
redis.call('HDEL', KEYS[3], 'finished_at', 'result', 'error', 'result_bytes', 'result_truncated',
  'reason', 'retries', 'throttles', 'deadline', 'version')
for name, value in pairs(fields) do redis.call('HSET', KEYS[3], name, value) end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[5], '*', 'id', ARGV[1], 'fn', fields['function'], 'ns',
  fields['namespace'])
return 1
"""
