"""The Redis keys and Lua scripts of the scheduler (``main_server.scheduler``).

Every Main replica runs the scheduler; the one holding the lease fires. Exactly once rests on
two things, both in Redis:

- ``hp:sched:leader``  STRING ``{owner}:{token}`` with a TTL of ``scheduler_lease_s`` (PX): who
  leads. ``owner`` names the process; ``token`` is the fencing token, a number taken from
  ``hp:sched:fence`` (INCR) each time leadership changes hands, so it only ever grows.
- ``hp:sched:fence``   STRING counter: the last fencing token handed out.
- ``hp:sched:fire:{schedule_id}:{tick_ms}``  STRING, the claim of one tick (its scheduled time in
  ms since the epoch), taken with SET NX: ``pending:{request_id}`` from the claim until the
  event is in the asynchronous queue, then ``done`` (or ``missed`` when it could not be fired).
  A claim lives ``claim_ttl_s`` (catch-up + a day): longer than any tick can still be fired.
- ``hp:sched:state:{schedule_id}``  HASH ``last_tick_ms`` (every tick up to it is done or
  counted missed; it only moves forward), ``fires``, ``missed``, ``last_fired_ms`` (the
  latest tick fired), its ``last_request_id`` and ``last_late_s`` (how late it fired),
  ``paused_at`` (the schedule was seen disabled or gone: the ticks up to its re-enabling are
  not due).
- ``hp:sched:epoch``   STRING: when the scheduler's state in this Redis began (unix s, set once).
  A schedule without a state hash (new, or its Redis lost its data) starts from the later of its
  ``created_at`` and this time, so a Redis that comes back empty fires no tick a second time.

The claim checks the fence atomically with the SET NX: a process that still believes it leads
(it was paused, or its clock is off) but whose lease another took cannot claim a tick.
"""

from __future__ import annotations

# every key of the scheduler starts with this
PREFIX = "hp:sched:"
LEADER = "hp:sched:leader"
FENCE = "hp:sched:fence"
EPOCH = "hp:sched:epoch"
FIRE_PREFIX = "hp:sched:fire:"
STATE_PREFIX = "hp:sched:state:"

# a claim outlives every chance of firing its tick: the catch-up window plus this margin
claim_margin_s = 86400.0


def fire(schedule_id: str, tick_ms: int) -> str:
    return f"{FIRE_PREFIX}{schedule_id}:{tick_ms}"


def state(schedule_id: str) -> str:
    return f"{STATE_PREFIX}{schedule_id}"


def claim_ttl_s(catch_up_s: float) -> int:
    return int(catch_up_s + claim_margin_s)


def tick_ms(tick: float) -> int:
    """A tick's scheduled time as the keys name it: whole milliseconds since the epoch."""
    return round(tick * 1000)


# Take or keep the lease. KEYS: LEADER, FENCE  ARGV: owner, my token ("" = none), lease ms
# -> {"renewed", token} (I led and still do) | {"acquired", token} (a new term, a new token) |
#    {"held", owner:token} (another leads)
ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[2] ~= '' and current == ARGV[1] .. ':' .. ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {'renewed', ARGV[2]}
  end
  return {'held', current}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[3])
return {'acquired', tostring(token)}
"""

# Give the lease up (a replica shutting down), if it is still mine. KEYS: LEADER
# ARGV: owner:token -> 1 if it was
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Claim one tick. KEYS: LEADER, fire(id, tick), state(id)
# ARGV: owner:token, request id, claim TTL s, tick ms
# -> {"fenced"} (the lease is not mine) | {"new", request id} | {"pending", request id} (a leader
#    claimed it and may have died before it was queued) | {"done"} | {"missed"}
CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'fenced'} end
local last = tonumber(redis.call('HGET', KEYS[3], 'last_tick_ms') or '-1')
if tonumber(ARGV[4]) <= last then return {'done'} end
if redis.call('SET', KEYS[2], 'pending:' .. ARGV[2], 'NX', 'EX', ARGV[3]) then
  return {'new', ARGV[2]}
end
local claim = redis.call('GET', KEYS[2])
if claim == 'done' or claim == 'missed' then return {claim} end
return {'pending', string.sub(claim, 9)}
"""

# A claimed tick ends: its event is queued ("done") or it could not be fired ("missed": its
# function is gone). Not fenced: whoever queued the event records that it did.
# KEYS: fire(id, tick), state(id)  ARGV: outcome, tick ms, request id, late s, claim TTL s
# -> 1, or 0 when the tick had already ended (counted once)
DONE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
local last = tonumber(redis.call('HGET', KEYS[2], 'last_tick_ms') or '-1')
if tonumber(ARGV[2]) > last then
  redis.call('HSET', KEYS[2], 'last_tick_ms', ARGV[2])
  redis.call('HDEL', KEYS[2], 'paused_at')
end
if ARGV[1] == 'done' then
  redis.call('HINCRBY', KEYS[2], 'fires', 1)
  if tonumber(ARGV[2]) > tonumber(redis.call('HGET', KEYS[2], 'last_fired_ms') or '-1') then
    redis.call('HSET', KEYS[2], 'last_fired_ms', ARGV[2], 'last_request_id', ARGV[3],
      'last_late_s', ARGV[4])
  end
else
  redis.call('HINCRBY', KEYS[2], 'missed', 1)
end
return 1
"""

# Count ticks too old to fire (beyond the catch-up window) as missed and move past them; or,
# with a count of 0, move past the ticks of a paused schedule. Fenced, and only from the
# last tick the leader read, so two counts of the same ticks never both land.
# KEYS: LEADER, state(id)  ARGV: owner:token, last tick ms as read ("" = none), new last ms,
# count -> 1, or 0 (fenced, or the state moved meanwhile)
SKIP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local last = redis.call('HGET', KEYS[2], 'last_tick_ms') or ''
if last ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'last_tick_ms', ARGV[3])
redis.call('HDEL', KEYS[2], 'paused_at')
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[2], 'missed', ARGV[4]) end
return 1
"""
