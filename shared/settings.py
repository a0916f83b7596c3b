"""hotpool configuration: one frozen ``Settings``, built from an environment mapping.

This is the only module that reads the environment. Every variable is ``HOTPOOL_<FIELD>`` in
upper case (``HOTPOOL_IDLE_TTL_S=300``); units are part of the field names.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hotpool.shared.runtimes import RUNTIMES

ENV_PREFIX = "HOTPOOL_"
BACKENDS = ("process", "docker")
EMBEDDED_REDIS = ("auto", "server", "inprocess")
DOCKER_REACH = ("auto", "bridge", "published")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}\Z")
HTTP_URL_RE = re.compile(r"^https?://[^/?#\s]+(/\S*)?\Z")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything Main, Manager and the CLI can be configured with."""

    # where the embedded default keeps its state (SQLite, code packages, logs)
    state_dir: Path = Path(".hotpool")

    # Main
    host: str = "127.0.0.1"
    port: int = 8080
    # empty = the embedded Redis of `hotpool dev`: see embedded_redis
    redis_url: str = field(default="", repr=False)
    # auto: a private redis-server child when one is installed, else the in-process stand-in
    # (fakeredis); server: require the redis-server; inprocess: always the stand-in
    embedded_redis: str = "auto"
    # Redis Sentinel: "host:port,host:port" of the sentinels, and the monitored master's name;
    # when set, the pool follows the master through failovers (redis_url then only gives
    # the db number and password, if any)
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    # per process: a call in flight holds one while its script runs, a request waiting for a
    # cold start one for its BLPOP; past the limit a command fails at once (503)
    redis_max_connections: int = 2000
    redis_connect_timeout_s: float = 2.0
    redis_socket_timeout_s: float = 5.0
    # empty = SQLite in state_dir
    database_url: str = field(default="", repr=False)
    database_pool_size: int = 10
    # code packages: empty bucket = the local directory in state_dir
    s3_bucket: str = ""
    s3_prefix: str = "packages/"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    function_cache_ttl_s: float = 2.0
    # execution records; empty mongo_url = the embedded SQLite log in state_dir
    mongo_url: str = field(default="", repr=False)
    mongo_database: str = "hotpool"
    log_retention_days: float = 30.0
    # versions of a function whose code package is kept (older ones lose theirs)
    keep_versions: int = 5
    record_batch_size: int = 200
    record_flush_interval_s: float = 0.2
    # keep connections to containers open between calls; off = one connection per call, the
    # ADR-000 behaviour that piles up TIME_WAIT sockets (kept for the benchmark that shows it)
    container_keepalive: bool = True

    # Manager
    manager_host: str = "127.0.0.1"
    manager_port: int = 8081
    # the URL Main uses to reach this Manager; empty = http://manager_host:manager_port
    manager_url: str = ""
    manager_id: str = ""
    # the address containers publish on, which Main calls directly
    advertise_host: str = "127.0.0.1"
    backend: str = "process"
    capacity_containers: int = 64
    # MB the node's containers may hold in all (the sum of their memory_mb, pre-warmed ones
    # included); 0 = the machine's physical memory
    capacity_memory_mb: int = 0
    # generic containers kept started per runtime, specialised on a cold start
    prewarm_count: int = 2
    # the runtimes whose generic containers are kept pre-started, comma-separated
    prewarm_runtimes: str = "python"
    prewarm_memory_mb: int = 128
    drain_timeout_s: float = 30.0
    idle_ttl_s: float = 600.0
    reaper_interval_s: float = 5.0
    heartbeat_interval_s: float = 2.0
    heartbeat_ttl_s: float = 10.0
    container_ready_timeout_s: float = 30.0
    log_limit_bytes: int = 64 * 1024
    # the AWS region functions are told they run in (AWS_REGION, AWS_DEFAULT_REGION), so
    # boto3 clients they create find one; an S3-compatible endpoint usually ignores it
    function_region: str = "us-east-1"
    # MB of code packages a node keeps on disk from a remote store (S3); the least recently
    # used go first, a package in use never; 0 = only the packages in use
    package_cache_mb: int = 1024

    # Docker backend
    docker_url: str = ""  # empty = the local daemon (DOCKER_HOST or /var/run/docker.sock)
    # how Main reaches a container: "published" (a host port on advertise_host, which Docker's
    # userland proxy relays when the caller is on the same host), "bridge" (the container's
    # own address on the functions' network, routable from this host only), or "auto":
    # bridge when advertise_host is a loopback address (Main is on this host), else published
    docker_reach: str = "auto"
    runtime_image_python: str = "hotpool/runtime-python:latest"
    runtime_image_nodejs: str = "hotpool/runtime-nodejs:latest"
    runtime_image_provided: str = "hotpool/runtime-provided:latest"
    container_cpus: float = 1.0
    container_pids_limit: int = 128
    # Lambda gives 250 MB of code and 512 MB of /tmp; here one tmpfs holds code, layers and
    # /tmp, and what is written to it counts against the container's memory_mb
    container_tmpfs_mb: int = 768
    docker_create_concurrency: int = 4
    # container-image functions: the repository prefixes a function's image may start with,
    # comma-separated, "{namespace}" standing for the deploying namespace; empty = image
    # functions off (shared.images)
    image_allow: str = ""
    # the memory of the relay container beside each image function's own (Lambda Runtime API)
    image_relay_memory_mb: int = 64

    # the pool
    lease_grace_s: float = 10.0
    cold_start_timeout_s: float = 60.0
    # herd control: requests that may wait for each cold start under way instead of starting
    # another container, and how long a request waits when the function is at its limit
    waiters_per_start: int = 4
    queue_timeout_s: float = 10.0
    # the lease reaper (one process at a time, under a Redis lock)
    lease_reaper_interval_s: float = 1.0
    orphan_grace_s: float = 5.0

    # access control
    key_cache_ttl_s: float = 2.0
    rate_per_s: float = 100.0  # default request rate per API key
    rate_burst: int = 200
    namespace_max_concurrency: int = 200  # calls in flight per namespace
    # each public web function's request rate (http=public: no key to meter), and its burst
    public_rate_per_s: float = 100.0
    public_rate_burst: int = 200
    # failed authentications (a key sent but not valid) per client address: past the burst the
    # address gets 429 until its bucket refills; generous, as a secret is not guessable anyway
    auth_failures_per_s: float = 10.0
    auth_failure_burst: int = 100
    # the secret Main presents to Managers (Authorization: Bearer); required by `hotpool
    # manager`, generated per process by `hotpool dev`
    manager_secret: str = field(default="", repr=False)

    # client connections, per service (main_server.connections): at the cap the oldest one
    # that has sent no request yet is closed to make room; a first request head must arrive in
    # http_header_timeout_s; a kept-alive connection idle for http_keepalive_timeout_s is closed
    # (above the 15 s after which aiohttp's own client stops reusing one); a request body must
    # arrive in http_body_timeout_s (408)
    http_max_connections: int = 10_000
    http_header_timeout_s: float = 10.0
    http_keepalive_timeout_s: float = 75.0
    http_body_timeout_s: float = 60.0

    # asynchronous invocations (main_server.async_consumer, on a Redis Stream): calls one Main
    # replica runs at once; the share of a function's max_concurrency (and of a namespace's
    # calls in flight) they may hold, the rest staying free for synchronous calls; events
    # a namespace may have queued (429 past it, 0 = no limit)
    async_concurrency: int = 16
    async_share: float = 0.5
    async_max_queued_per_namespace: int = 10_000
    # waits before the 1st, 2nd, ... retry of an event whose function failed (the last repeats)
    async_retry_delays_s: str = "60,120"
    # a throttle or platform error is retried after this, doubling up to the maximum, until
    # the event's max_event_age_s (Lambda: 1 s up to 5 min)
    async_throttle_delay_s: float = 1.0
    async_throttle_max_delay_s: float = 300.0
    # how long an event's status and result are kept once it ends, and the result's bound
    async_result_ttl_s: float = 3600.0
    async_max_result_bytes: int = 256 * 1024
    # a replica that has not renewed its events' claim for this long is presumed dead: another
    # claims them and runs them again once the function's timeout + lease grace has passed
    async_consumer_timeout_s: float = 10.0
    # an Idempotency-Key maps to its first request for this long (Lambda: 24 h)
    async_idempotency_ttl_s: float = 86400.0
    # dead letters are kept this long unless redriven or deleted (an SQS queue's maximum)
    async_dead_letter_ttl_s: float = 14 * 86400.0
    # Redis replicas that must hold an accepted event before the 202 (WAIT); 0 = the primary's
    # own persistence only (AOF), see the README's durability section
    async_wait_replicas: int = 0
    async_wait_timeout_s: float = 1.0

    # streamed responses (a handler that returns a generator): the most bytes one call may
    # stream (Lambda's response-streaming limit), and what Main holds of one stream before it
    # stops reading the container (back-pressure), see main_server.stream
    max_stream_bytes: int = 20 * 1024 * 1024
    stream_buffer_bytes: int = 256 * 1024

    # WebSocket functions (/ws/, API Gateway WebSocket semantics and limits): one message's
    # size, a connection's idle time and lifetime, connections one replica holds, and messages
    # a connection may send per second (with a burst of as many)
    ws_max_message_bytes: int = 128 * 1024
    ws_idle_timeout_s: float = 600.0
    ws_max_lifetime_s: float = 7200.0
    ws_max_connections: int = 10_000
    ws_messages_per_s: float = 100.0
    # the @connections endpoint as functions reach it (HOTPOOL_CONNECTIONS_URL in their
    # environment); empty = http://{host}:{port}/ws of this Main
    connections_url: str = ""

    # scheduled functions (main_server.scheduler): the leader's Redis lease (another replica
    # takes over within it), how far back a new leader fires the ticks it missed (older ones
    # are counted as missed), the shortest interval an expression may have, and schedules
    # one namespace may hold
    scheduler_lease_s: float = 10.0
    schedule_catch_up_s: float = 300.0
    schedule_min_interval_s: float = 1.0
    schedule_max_per_namespace: int = 100

    # Prometheus metrics (shared.metrics): Main's and the Manager's /metrics listen on their
    # own port (0 = off), on metrics_host (empty = the service's own host); functions beyond
    # metrics_max_functions share the label value "other"
    metrics_host: str = ""
    metrics_port: int = 9464
    manager_metrics_port: int = 9465
    metrics_max_functions: int = 200

    # input limits
    max_package_bytes: int = 50 * 1024 * 1024
    max_unzipped_bytes: int = 250 * 1024 * 1024
    max_event_bytes: int = 6 * 1024 * 1024
    max_event_depth: int = 128
    # a function's return value (Lambda's synchronous limit); Main reads no more than this
    max_response_bytes: int = 6 * 1024 * 1024
    # one page of an invocation listing (the records' JSON); a page ends there or at its limit
    max_listing_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        # containers run with their own working directory: every path must be absolute
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        if self.backend not in BACKENDS:
            raise SettingsError(
                f"HOTPOOL_BACKEND={self.backend!r} is not one of {', '.join(BACKENDS)}"
            )
        if self.docker_reach not in DOCKER_REACH:
            raise SettingsError(
                f"{ENV_PREFIX}DOCKER_REACH={self.docker_reach!r} is not one of "
                f"{', '.join(DOCKER_REACH)}"
            )
        if self.embedded_redis not in EMBEDDED_REDIS:
            raise SettingsError(
                f"HOTPOOL_EMBEDDED_REDIS={self.embedded_redis!r} is not one of "
                f"{', '.join(EMBEDDED_REDIS)}"
            )
        if not REGION_RE.match(self.function_region):
            raise SettingsError(
                f"{ENV_PREFIX}FUNCTION_REGION={self.function_region!r} is not a region name "
                "such as us-east-1"
            )
        if self.keep_versions < 1:
            raise SettingsError(f"{ENV_PREFIX}KEEP_VERSIONS must be at least 1")
        _retry_delays(self.async_retry_delays_s)
        if not 0 < self.async_share <= 1:
            raise SettingsError(f"{ENV_PREFIX}ASYNC_SHARE must be a fraction > 0 and <= 1")
        for positive in (
            "auth_failures_per_s", "public_rate_per_s", "async_concurrency",
            "async_result_ttl_s", "async_idempotency_ttl_s", "async_dead_letter_ttl_s",
            # a WebSocket limit of 0 would disable it (aiohttp's max_msg_size) or close at once
            "ws_max_message_bytes", "ws_idle_timeout_s", "ws_max_lifetime_s", "ws_messages_per_s",
            # a stream limit of 0 would end every stream at its first byte
            "max_stream_bytes", "stream_buffer_bytes",
            # a lease of 0 would have no leader; a folding limit of 0 would fold every function
            "scheduler_lease_s", "schedule_min_interval_s", "metrics_max_functions",
        ):  # fmt: skip
            if not getattr(self, positive) > 0:
                raise SettingsError(f"{ENV_PREFIX}{positive.upper()} must be a number > 0")
        for port in ("port", "manager_port", "metrics_port", "manager_metrics_port"):
            if not 0 <= getattr(self, port) <= 65535:
                raise SettingsError(
                    f"{ENV_PREFIX}{port.upper()} must be a port number, 0-65535 "
                    f"(0: {'off' if 'metrics' in port else 'any free one'})"
                )
        if unknown := [r for r in self.prewarmed_runtimes if r not in RUNTIMES]:
            raise SettingsError(
                f"{ENV_PREFIX}PREWARM_RUNTIMES names {unknown[0]!r}, which is not a runtime; "
                f"use a comma-separated list of {', '.join(RUNTIMES)} (or nothing)"
            )
        if self.connections_url and not HTTP_URL_RE.match(self.connections_url):
            raise SettingsError(
                f"{ENV_PREFIX}CONNECTIONS_URL={self.connections_url!r} must be an http:// or "
                "https:// URL of Main's /ws that containers can reach, e.g. http://10.0.0.5:8080/ws"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            # "not >= 0" also refuses NaN, which would make a sleep or a timeout last forever
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not value >= 0:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be a number >= 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``HOTPOOL_*`` variables in ``environ`` (default: the process's)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in env:
                values[f.name] = _convert(name, env[name], f.type)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.state_dir / 'hotpool.db'}"

    @property
    def effective_manager_url(self) -> str:
        return self.manager_url or f"http://{self.manager_host}:{self.manager_port}"

    @property
    def effective_connections_url(self) -> str:
        """The @connections endpoint functions are told: ``connections_url``, else this Main's
        own ``/ws`` (``hotpool dev`` runs Main and Manager with the same settings)."""
        if self.connections_url:
            return self.connections_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/ws"

    @property
    def effective_manager_id(self) -> str:
        # stable across restarts, so a restarted Manager finds and reconciles its containers
        return self.manager_id or f"{socket.gethostname()}-{self.manager_port}"

    @property
    def effective_capacity_memory_mb(self) -> int:
        if self.capacity_memory_mb:
            return self.capacity_memory_mb
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)

    @property
    def runtime_images(self) -> dict[str, str]:
        """The Docker image of each runtime, by runtime name."""
        return {
            "python": self.runtime_image_python,
            "nodejs": self.runtime_image_nodejs,
            "provided": self.runtime_image_provided,
        }

    @property
    def prewarmed_runtimes(self) -> tuple[str, ...]:
        """``prewarm_runtimes`` as names, each one of RUNTIMES (checked at start-up)."""
        return tuple(name.strip() for name in self.prewarm_runtimes.split(",") if name.strip())

    @property
    def async_retry_delays(self) -> tuple[float, ...]:
        """The waits before each retry of a failed asynchronous event, in seconds."""
        return _retry_delays(self.async_retry_delays_s)

    @property
    def code_dir(self) -> Path:
        return self.state_dir / "code"

    @property
    def containers_dir(self) -> Path:
        return self.state_dir / "containers"


def _retry_delays(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        delays = ()
    if not delays or not all(0 <= d <= 3600 for d in delays):
        raise SettingsError(
            f"{ENV_PREFIX}ASYNC_RETRY_DELAYS_S={raw!r} must be comma-separated seconds from 0 "
            "to 3600, e.g. 60,120"
        )
    return delays


def _convert(name: str, raw: str, annotation: Any) -> Any:
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
