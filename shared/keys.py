"""Every Redis key, key prefix, Lua script and Redis-side TTL hotpool uses, in one place.

The warm pool (ADR-000 decision 2):

- ``hp:pool:{function}:{version}``  LIST of idle containers of one function version. LPOP hands
  an entry to exactly one caller; RPUSH gives it back.
- ``hp:leases``                    ZSET entry -> lease deadline (unix seconds). A container is
  leased from acquire until release; an expired lease belongs to a caller that died.
- ``hp:idle:{manager_id}``          ZSET entry -> time it last became idle, for the idle reaper.
- ``hp:retired:{function}:{version}``  STRING marker: that version no longer takes containers
  back (the function was updated or deleted); release answers "remove it" instead of RPUSH.
- ``hp:containers:{manager_id}``    HASH container id -> entry: every live container of a Manager.
- ``hp:managers``                  HASH manager id -> JSON registration (url, capacity, ...).
- ``hp:manager-alive:{manager_id}`` STRING with a TTL: the Manager's heartbeat.

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

# A retired marker outlives any lease (timeout + grace) by far.
retired_marker_ttl_s = 24 * 3600


def pool(function: str, version: int) -> str:
    return f"{POOL_PREFIX}{function}:{version}"


def idle(manager_id: str) -> str:
    return f"{IDLE_PREFIX}{manager_id}"


def retired(function: str, version: int) -> str:
    return f"{RETIRED_PREFIX}{function}:{version}"


def containers(manager_id: str) -> str:
    return f"{CONTAINERS_PREFIX}{manager_id}"


def manager_alive(manager_id: str) -> str:
    return f"{MANAGER_ALIVE_PREFIX}{manager_id}"


# KEYS: pool list, leases, idle zset of the entry's manager... the caller does not know which
# manager's container it will get, so acquire does not touch the idle set; the reaper's LREM
# decides (an entry that is not in the list is in use and is left alone).
# ARGV: lease deadline
ACQUIRE = """
local entry = redis.call('LPOP', KEYS[1])
if entry then
  redis.call('ZADD', KEYS[2], ARGV[1], entry)
end
return entry
"""

# KEYS: leases. ARGV: entry, deadline. A freshly cold-started container is leased straight away.
LEASE = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: pool list, leases, retired marker, idle zset. ARGV: entry, now.
# Returns 1 = back in the pool; 0 = version retired, remove the container;
# -1 = the lease was already gone (reclaimed or evicted), so the entry must not be pushed twice.
RELEASE = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return -1
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
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

# KEYS: pool list, leases, idle zset. ARGV: entry. Forget a dead or killed container everywhere.
EVICT = """
local n = redis.call('LREM', KEYS[1], 0, ARGV[1])
n = n + redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return n
"""

# KEYS: pool list, retired marker. ARGV: marker ttl seconds.
# Retire a version: no container goes back to it, and its idle containers are handed out for
# removal in the same step, so none can be acquired after the update.
RETIRE = """
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return entries
"""
