"""The Redis keys, channels and TTLs of WebSocket connections (the pool's are in ``shared.keys``).

A connection lives on the one Main replica that holds its socket; Redis tells every replica
where it is, so the ``@connections`` API answers on any of them:

- ``hp:ws:conn:{connection_id}``     HASH: ``replica``, ``namespace``, ``function`` (qualified),
  ``connected_at``, ``last_active_at`` (epoch seconds), ``source_ip``, ``user_agent``. Written
  when the connection is accepted, its ``last_active_at`` every ``registry_sync_interval_s``;
  deleted when the socket ends. Its TTL outlives the longest connection, so the hashes of a
  replica that died without a word disappear by themselves.
- ``hp:ws:gone:{connection_id}``     STRING JSON ``{"namespace", "function"}``, ``gone_ttl_s``:
  the tombstone of an ended connection. Its own tenant is told 410 Gone (API Gateway's answer)
  rather than the 404 of an id that never existed.
- ``hp:ws:replica:{replica_id}``     pub/sub channel each replica listens on: the sends and
  closes other replicas forward to the connections it holds, in the order they were published.
  A PUBLISH that reaches no subscriber means the replica is gone.
- ``hp:ws:signing-key``              STRING, 32 random bytes (hex), set once with SET NX and
  never expiring: the HMAC key of the functions' connection tokens (``shared.ws_token``), so
  every Main and Manager derives the same token without configuration.
"""

from __future__ import annotations

from hotpool.shared.settings import Settings

CONN_PREFIX = "hp:ws:conn:"
GONE_PREFIX = "hp:ws:gone:"
REPLICA_PREFIX = "hp:ws:replica:"
SIGNING_KEY = "hp:ws:signing-key"

# how long an ended connection's id answers 410 Gone to its tenant instead of 404
gone_ttl_s = 300
# a registry entry outlives the longest connection by this much
registry_grace_s = 60
# how often a replica writes its connections' last activity into the registry: a GET through
# another replica sees LastActiveAt at most this old
registry_sync_interval_s = 5.0
# how long Mains and Managers keep the signing key before reading it again (a Redis that lost
# its data makes a new one; every process has it within this time)
signing_key_cache_s = 60.0
signing_key_bytes = 32

# the hash fields of a registry entry
FIELDS = (
    "replica", "namespace", "function", "connected_at", "last_active_at", "source_ip",
    "user_agent",
)  # fmt: skip


def connection(connection_id: str) -> str:
    return f"{CONN_PREFIX}{connection_id}"


def gone(connection_id: str) -> str:
    return f"{GONE_PREFIX}{connection_id}"


def replica_channel(replica_id: str) -> str:
    return f"{REPLICA_PREFIX}{replica_id}"


def registry_ttl_s(settings: Settings) -> int:
    """The TTL of a registry entry: longer than any connection may live."""
    return int(settings.ws_max_lifetime_s) + registry_grace_s
