"""Every Redis key, key prefix, Lua script and Redis-side TTL hotpool uses, in one place.

The warm pool (ADR-000 decision 2):

- ``hp:pool:{function}:{version}``  LIST of idle containers of one function version. LPOP hands
  an entry to exactly one caller; RPUSH gives it back.
- ``hp:leases``                    ZSET entry -> lease deadline (unix seconds). A container is
  leased from acquire until release; an expired lease belongs to a caller that died.
- ``hp:idle:{manager_id}``          ZSET entry -> time it last became idle, for the idle reaper.
- ``hp:retired:{function}:{version}``  STRING marker: that version no longer takes containers
  back (the function was updated or deleted); release answers "remove it" instead of RPUSH.
- ``hp:fv:{function}:{version}``    HASH ``leased``: the version's leased containers, kept exact by
  the scripts below (every lease change goes through one of them).
- ``hp:starting:{function}:{version}``  ZSET token -> deadline: cold starts under way. A
  token expires by itself, so a Main that dies mid-start does not hold a slot for ever.
- ``hp:waiting:{function}:{version}``   ZSET token -> deadline: requests waiting (BLPOP) for a
  container of the version instead of starting one (herd control).
- ``hp:wake:{function}:{version}``   LIST: one ``retired`` sentinel per waiter, pushed when the
  version is retired; waiters BLPOP it with the pool list, so they move to the new version.
- ``hp:containers:{manager_id}``    HASH container id -> entry: every live container of a Manager.
- ``hp:managers``                  HASH manager id -> JSON registration (url, capacity, ...).
- ``hp:manager-alive:{manager_id}`` STRING with a TTL: the Manager's heartbeat.
  These three are the Manager registry; only ``shared.registry`` reads or writes them.
- ``hp:reaper-lock``               STRING with a TTL: which process runs the lease reaper now.

Access control:

- ``hp:bucket:{key_id}``            HASH tokens, updated_at: the key's request-rate bucket.
- ``hp:bucket:fn:{function}``       the same, of a public web function (no key to meter);
  key ids are hex, so the two never meet.
- ``hp:ns-inflight:{namespace}``    ZSET token -> deadline: the namespace's calls in flight.
- ``hp:auth-failures:{address}``    HASH tokens, updated_at: the bucket of failed authentications
  from one client address (TAKE_TOKEN, taken on each failure).
- ``hp:keys-changed``               channel: a key id, published when a key is revoked so every
  Main replica drops its cached copy at once.

Pub/sub:

- ``hp:functions-changed``          channel: a function name, published on every deploy and
  delete so every Main replica drops its cached copy at once.

An *entry* is ``function|version|manager_id|container_id|host:port``: it names the container
and its Manager, not only an address, so a dead one can be evicted and removed.
"""

from __future__ import annotations

POOL_PREFIX = "hp:pool:"
LEASES = "hp:leases"
IDLE_PREFIX = "hp:idle:"
RETIRED_PREFIX = "hp:retired:"
CONTAINERS_PREFIX = "hp:containers:"
MANAGERS = "hp:managers"
MANAGER_ALIVE_PREFIX = "hp:manager-alive:"
FUNCTIONS_CHANGED = "hp:functions-changed"
FV_PREFIX = "hp:fv:"
STARTING_PREFIX = "hp:starting:"
WAITING_PREFIX = "hp:waiting:"
WAKE_PREFIX = "hp:wake:"
WAKE_SENTINEL = "retired"
REAPER_LOCK = "hp:reaper-lock"
BUCKET_PREFIX = "hp:bucket:"
NS_INFLIGHT_PREFIX = "hp:ns-inflight:"
AUTH_FAILURES_PREFIX = "hp:auth-failures:"
KEYS_CHANGED = "hp:keys-changed"

# A retired marker outlives any lease (timeout + grace) by far.
retired_marker_ttl_s = 24 * 3600
# Wake-up sentinels left unclaimed (their waiter left meanwhile) outlive any wait by far.
wake_ttl_s = 3600


def pool(function: str, version: int) -> str:
    return f"{POOL_PREFIX}{function}:{version}"


def fv(function: str, version: int) -> str:
    return f"{FV_PREFIX}{function}:{version}"


def starting(function: str, version: int) -> str:
    return f"{STARTING_PREFIX}{function}:{version}"


def waiting(function: str, version: int) -> str:
    return f"{WAITING_PREFIX}{function}:{version}"


def wake(function: str, version: int) -> str:
    return f"{WAKE_PREFIX}{function}:{version}"


def bucket(key_id: str) -> str:
    return f"{BUCKET_PREFIX}{key_id}"


def auth_failures(address: str) -> str:
    return f"{AUTH_FAILURES_PREFIX}{address}"


def ns_inflight(namespace: str) -> str:
    return f"{NS_INFLIGHT_PREFIX}{namespace}"


def idle(manager_id: str) -> str:
    return f"{IDLE_PREFIX}{manager_id}"


def retired(function: str, version: int) -> str:
    return f"{RETIRED_PREFIX}{function}:{version}"


def containers(manager_id: str) -> str:
    return f"{CONTAINERS_PREFIX}{manager_id}"


def manager_alive(manager_id: str) -> str:
    return f"{MANAGER_ALIVE_PREFIX}{manager_id}"


# KEYS: pool list, leases, fv hash. ARGV: lease deadline.
ACQUIRE = """
local entry = redis.call('LPOP', KEYS[1])
if entry and redis.call('ZADD', KEYS[2], ARGV[1], entry) == 1 then
  redis.call('HINCRBY', KEYS[3], 'leased', 1)
end
return entry
"""

# Lua functions the scripts below are assembled from, so a script that does several steps in
# one round trip runs the very same code as the script for each step.

# acquire_or_plan: lease an idle container, or on a miss decide what the request does (herd
# control; mirrors shared.pool.plan_miss, which the tests hold it to).
# A miss on a retired version answers 'retired': the caller moves to the current version.
# Returns {'lease', entry} | {'retired', ''} | {'start', ''} | {'wait', ''} | {'queue', ''}.
_ACQUIRE_OR_PLAN_FN = """
local function acquire_or_plan(k_pool, k_leases, k_fv, k_starting, k_waiting, k_retired,
                               lease_deadline, now, max_concurrency, waiters_per_start, token,
                               start_deadline, wait_deadline)
  local entry = redis.call('LPOP', k_pool)
  if entry then
    -- counted only if it was not leased already (the counter must stay exact)
    if redis.call('ZADD', k_leases, lease_deadline, entry) == 1 then
      redis.call('HINCRBY', k_fv, 'leased', 1)
    end
    return {'lease', entry}
  end
  if redis.call('EXISTS', k_retired) == 1 then
    return {'retired', ''}
  end
  redis.call('ZREMRANGEBYSCORE', k_starting, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', k_waiting, '-inf', now)
  local starting = redis.call('ZCARD', k_starting)
  local waiting = redis.call('ZCARD', k_waiting)
  local leased = tonumber(redis.call('HGET', k_fv, 'leased') or '0')
  if leased + starting >= tonumber(max_concurrency) then
    redis.call('ZADD', k_waiting, wait_deadline, token)
    return {'queue', ''}
  end
  if starting * tonumber(waiters_per_start) > waiting then
    redis.call('ZADD', k_waiting, wait_deadline, token)
    return {'wait', ''}
  end
  redis.call('ZADD', k_starting, start_deadline, token)
  return {'start', ''}
end
"""

# take_token: a token bucket; returns 0 when the request may go, else the seconds until a
# token is there.
_TAKE_TOKEN_FN = """
local function take_token(key, rate, burst, now)
  rate = tonumber(rate)
  burst = tonumber(burst)
  now = tonumber(now)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1] or burst)
  local at = tonumber(state[2] or now)
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tokens, 'at', now)
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
  return wait
end
"""

# admit: count one more call of a namespace in flight unless it is at its limit.
_ADMIT_FN = """
local function admit(key, limit, token, deadline, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(limit) then
    return false
  end
  redis.call('ZADD', key, deadline, token)
  return true
end
"""

# KEYS: pool list, leases, fv hash, starting zset, waiting zset, retired marker.
# ARGV: lease deadline, now, max_concurrency, waiters_per_start, token, start deadline,
#       wait deadline.
ACQUIRE_OR_PLAN = (
    _ACQUIRE_OR_PLAN_FN
    + """
return acquire_or_plan(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[1], ARGV[2],
                       ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"""
)

# An invocation's whole admission in one round trip (the hot path): the key's rate bucket,
# the namespace's calls in flight, then acquire_or_plan. The namespace slot is held under
# the request's token until RELEASE (or ``exit``) drops it.
# KEYS: 1-6 as ACQUIRE_OR_PLAN, 7 rate bucket, 8 namespace in-flight zset.
# ARGV: 1-7 as ACQUIRE_OR_PLAN; 8 rate per second (0: the request was metered already),
#       9 burst, 10 namespace limit, 11 namespace slot deadline.
# Returns {'rate', seconds to wait} | {'namespace', ''} | what acquire_or_plan returns.
ENTER = (
    _TAKE_TOKEN_FN
    + _ADMIT_FN
    + _ACQUIRE_OR_PLAN_FN
    + """
if tonumber(ARGV[8]) > 0 then
  local wait = take_token(KEYS[7], ARGV[8], ARGV[9], ARGV[2])
  if wait > 0 then
    return {'rate', tostring(wait)}
  end
end
if not admit(KEYS[8], ARGV[10], ARGV[5], ARGV[11], ARGV[2]) then
  return {'namespace', ''}
end
return acquire_or_plan(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[1], ARGV[2],
                       ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"""
)

# KEYS: leases, fv hash, a starting or waiting zset. ARGV: entry, deadline, token.
# Lease a container that never was in the list (a fresh cold start), or one taken by BLPOP,
# and drop the request's starting/waiting token in the same step.
LEASE = """
redis.call('ZREM', KEYS[3], ARGV[3])
if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'leased', 1)
end
return 1
"""

# KEYS: pool list, leases, retired marker, idle zset, fv hash, namespace in-flight zset.
# ARGV: entry, now, the request's token ('' = no namespace slot to drop).
# Returns 1 = back in the pool; 0 = version retired, remove the container;
# -1 = the lease was already gone (reclaimed or evicted), so the entry must not be pushed twice.
RELEASE = """
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[6], ARGV[3])
end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return -1
end
redis.call('HINCRBY', KEYS[5], 'leased', -1)
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return 1
"""

# KEYS: pool list, retired marker, idle zset. ARGV: entry, now.
# Put back a container that is in neither the list nor a lease (a reclaimed lease that passed
# its health check, or an orphan). 1 = pushed, 0 = version retired (remove it).
PUT_BACK = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""

# KEYS: leases, fv hash. ARGV: entry, now.
# Claim an expired lease for the reaper: 1 if it was expired and is now gone.
RECLAIM = """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'leased', -1)
return 1
"""

# KEYS: pool list, idle zset. ARGV: entry.
# The idle reaper's claim: only a container that is still in the list (not leased) is removed.
REMOVE_IDLE = """
local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
if n == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return n
"""

# evict: forget a dead or killed container everywhere (its list, its lease, the idle set);
# returns how many places held it.
_EVICT_FN = """
local function evict(k_pool, k_leases, k_idle, k_fv, entry)
  local n = redis.call('LREM', k_pool, 0, entry)
  if redis.call('ZREM', k_leases, entry) == 1 then
    redis.call('HINCRBY', k_fv, 'leased', -1)
    n = n + 1
  end
  redis.call('ZREM', k_idle, entry)
  return n
end
"""

# entry_keys: the pool list and fv hash of an entry, built as ``pool()`` and ``fv()`` build
# them (the prefixes are passed in, so they are spelt only here; the tests hold the two
# builders to each other). The version is kept as the entry spells it: Lua's tostring would
# write a large number in exponent form.
ENTRY_KEYS_FN = """
local function entry_keys(entry, pool_prefix, fv_prefix)
  local fn, version = string.match(entry, '^([^|]*)|([^|]*)|')
  local suffix = fn .. ':' .. version
  return pool_prefix .. suffix, fv_prefix .. suffix
end
"""

# KEYS: pool list, leases, idle zset, fv hash. ARGV: entry.
# Forget a dead or killed container everywhere.
EVICT = _EVICT_FN + "return evict(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])\n"

# KEYS: managers hash, alive key, containers hash, idle zset, leases.
# ARGV: manager id, POOL_PREFIX, FV_PREFIX.
# Purge a Manager whose heartbeat stopped: evict every container it registered, then drop its
# containers hash, its idle set and its registration. The alive key is checked in the same
# step: a Manager that came back (restarted under its stable id) between the reaper's
# snapshot and the purge is left whole, never half-purged.
# Returns 0 when it is alive, else the entries it removed.
PURGE_MANAGER = (
    _EVICT_FN
    + ENTRY_KEYS_FN
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local entries = redis.call('HVALS', KEYS[3])
for _, entry in ipairs(entries) do
  local k_pool, k_fv = entry_keys(entry, ARGV[2], ARGV[3])
  -- every entry of the hash is the Manager's own, so its idle set is KEYS[4]
  evict(k_pool, KEYS[5], KEYS[4], k_fv, entry)
end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[1], ARGV[1])
return entries
"""
)

# KEYS: pool list, retired marker, waiting zset, wake list.
# ARGV: marker ttl seconds, now, wake ttl seconds, WAKE_SENTINEL.
# Retire a version: no container goes back to it, and its idle containers are handed out for
# removal in the same step, so none can be acquired after the update. Each request waiting for
# one (nothing refills the list now) gets a sentinel on the wake list it BLPOPs too; a request
# planning after this step finds the marker (acquire_or_plan answers 'retired').
RETIRE = """
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
for _ = 1, redis.call('ZCARD', KEYS[3]) do
  redis.call('RPUSH', KEYS[4], ARGV[4])
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return entries
"""

# KEYS: lock. ARGV: owner, ttl ms. Take or keep the reaper lock; 1 if this owner holds it.
LOCK = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock. ARGV: owner. Give the lock up, only if this owner holds it.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: bucket hash. ARGV: rate per second, burst, now.
# 0 when the request may go, else the seconds until a token is there.
TAKE_TOKEN = _TAKE_TOKEN_FN + "return tostring(take_token(KEYS[1], ARGV[1], ARGV[2], ARGV[3]))\n"
