"""Running the services: ``hotpool dev`` (Main and Manager in one process, embedded stores),
``hotpool main`` and ``hotpool manager`` (one service each, for production).

Each service's Prometheus ``/metrics`` listens on a port of its own (``metrics_port`` for
Main, ``manager_metrics_port`` for a Manager; 0 = off), opened here and not by the apps, so
the apps tests build bind nothing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import gc
import hashlib
import logging
import os
import re
import secrets
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiohttp import web

from hotpool.main_server.app import create_app
from hotpool.main_server.connections import GuardedSite, connection_cap
from hotpool.main_server.state import METRICS
from hotpool.manager.app import METRICS as MANAGER_METRICS
from hotpool.manager.app import create_manager_app
from hotpool.shared.auth import ALL_NAMESPACES
from hotpool.shared.keystore import SqlKeyStore
from hotpool.shared.local_redis import LocalRedis, wanted_binary
from hotpool.shared.metrics import Exporter, metrics_app
from hotpool.shared.redis_conn import in_process_server, make_redis, uses_in_process_redis
from hotpool.shared.settings import Settings, SettingsError
from hotpool.shared.stores import open_metadata

log = logging.getLogger(__name__)

# the collector's generation thresholds once a service is up (CPython's default: 700, 10, 10)
gc_thresholds = (50_000, 20, 20)


@dataclass(frozen=True)
class Address:
    """Where a service listens. Port 0 means any free port: it is bound at once, so the port
    chosen is known before the app is built (a Manager registers its URL at start-up) and
    announced in the ready line; no other process can take it in between. ``setting`` says
    how to choose another port, for the one-line error when this one is taken."""

    host: str
    port: int
    sock: socket.socket | None = None
    setting: str = field(default="", compare=False)

    @classmethod
    def claim(cls, host: str, port: int, setting: str = "") -> Address:
        if port != 0:
            return cls(host, port, setting=setting)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        return cls(host, sock.getsockname()[1], sock, setting)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def site(self, runner: web.AppRunner, settings: Settings) -> web.BaseSite:
        """The site listening here, behind the connection guard (``main_server.connections``)."""
        listen = (
            {"host": self.host, "port": self.port} if self.sock is None else {"sock": self.sock}
        )
        return GuardedSite(
            runner,
            max_connections=connection_cap(settings.http_max_connections),
            header_timeout_s=settings.http_header_timeout_s,
            **listen,
        )


Served = tuple[web.Application, Address]


# how to move each service's port elsewhere, named when it is taken
main_port_setting = "--port or HOTPOOL_PORT (0: any free one)"
manager_port_setting = "--port or HOTPOOL_MANAGER_PORT (0: any free one)"
main_metrics_setting = "HOTPOOL_METRICS_PORT (0: off)"
manager_metrics_setting = "HOTPOOL_MANAGER_METRICS_PORT (0: off)"


def metrics_site(
    exporter: Exporter, host: str, port: int, settings: Settings, setting: str = ""
) -> list[Served]:
    """The ``/metrics`` app of a service listening on ``host``, on ``port`` (none when 0), on
    ``metrics_host`` if that is set; ``setting`` names the port's setting."""
    if port == 0:
        return []
    return [(metrics_app(exporter), Address(settings.metrics_host or host, port, setting=setting))]


def metrics_note(sites: list[Served]) -> str:
    """The ready line's mention of the metrics ports."""
    if not sites:
        return ""
    return " (metrics: " + ", ".join(f"{address.url}/metrics" for _, address in sites) + ")"


# the ready line names each service's URL: "... Main on http://h:p ... Manager on http://h:q"
ANNOUNCED = re.compile(r"\b(main|manager) on (http://[^\s,;()]+)", re.IGNORECASE)


def announced_urls(output: str) -> dict[str, str]:
    """The URLs the ready line in a service's ``output`` announces, by service ("main",
    "manager"); empty until the service is ready."""
    urls: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("hotpool "):
            urls.update((name.lower(), url) for name, url in ANNOUNCED.findall(line))
    return urls


async def _serve(apps: list[Served], ready_message: str, settings: Settings) -> None:
    runners = []
    try:
        # every app is set up (the Manager registered in Redis) before any listens, and the
        # ones Main depends on listen first: Main's first call never finds no Manager
        for app, _ in apps:
            runner = web.AppRunner(
                app,
                access_log=None,
                handle_signals=False,
                keepalive_timeout=settings.http_keepalive_timeout_s,
            )
            # listed first: a set-up that fails half-way is cleaned up (what it opened closed)
            runners.append(runner)
            await runner.setup()
        for runner, (_, address) in reversed(list(zip(runners, apps, strict=True))):
            await _listen(address, runner, settings)
        # what start-up built lives as long as the process: the cyclic collector need not walk
        # it again and again, and a request's few hundred short-lived objects need not trigger
        # a collection every other call (a profile of the warm path; Instagram's "Dismissing
        # Python Garbage Collection" did the same for the same reason)
        gc.freeze()
        gc.set_threshold(*gc_thresholds)
        print(ready_message, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        # in order: Main stops sending work before the Manager removes its containers
        for runner in runners:
            await runner.cleanup()
        for _, address in apps:
            if address.sock is not None:
                address.sock.close()


async def _listen(address: Address, runner: web.AppRunner, settings: Settings) -> None:
    try:
        await address.site(runner, settings).start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or not address.setting:
            raise
        # a busy port is a setting to change, not a crash: one line naming that setting
        raise SettingsError(
            f"port {address.port} on {address.host} is already in use: another hotpool or "
            f"program listens there; choose another with {address.setting}"
        ) from None


ADMIN_KEY_FILE = "admin.key"


async def ensure_admin_key(settings: Settings) -> str | None:
    """On the first start of the embedded default, create an admin key, store it in the
    state directory (mode 0600) for the CLI, and return it so it can be printed once."""
    path = settings.state_dir / ADMIN_KEY_FILE
    metadata = await open_metadata(settings)
    try:
        keystore = SqlKeyStore(metadata)
        if await keystore.has_admin_key() and path.exists():
            return None
        key, _ = await keystore.create(
            namespaces=[ALL_NAMESPACES], scopes="admin", description="hotpool dev bootstrap"
        )
    finally:
        await metadata.close()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.token + "\n")
    return key.token


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Hold the state folder for this process: a second ``hotpool dev`` on it would take over
    its Redis socket and, stopping, remove it from under the first. Released on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / "dev.lock", "a+", encoding="ascii")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise SettingsError(
            f"another hotpool dev (pid {holder}) is using the state folder {state_dir}; "
            "stop it, or give this one a folder of its own (HOTPOOL_STATE_DIR)"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


async def run_dev(settings: Settings) -> None:
    """Main and Manager in one process, with the embedded Redis (``shared.local_redis``)."""
    lock = lock_state_dir(settings.state_dir)
    try:
        await _run_dev(settings)
    finally:
        lock.close()


async def _run_dev(settings: Settings) -> None:
    if not settings.manager_secret:
        # both halves live in this process: a fresh secret per run is all they need
        settings = settings.replace(manager_secret=secrets.token_hex(32))
    if not settings.manager_id and settings.manager_port == 0:
        # the default id, host-port, would change with every free port; reconcile() finds the
        # containers a crashed run left only under the id they carry, so key it to the folder
        folder = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:8]
        settings = settings.replace(manager_id=f"{socket.gethostname()}-dev-{folder}")
    main_at = Address.claim(settings.host, settings.port, main_port_setting)
    manager_at = Address.claim(settings.manager_host, settings.manager_port, manager_port_setting)
    settings = settings.replace(port=main_at.port, manager_port=manager_at.port)
    created = await ensure_admin_key(settings)
    if created:
        print(
            f"created an admin API key (shown once; also stored in "
            f"{settings.state_dir / ADMIN_KEY_FILE}, where the CLI finds it when run with "
            f"the same HOTPOOL_STATE_DIR):\n  {created}",
            flush=True,
        )
    local = None
    binary = wanted_binary(settings)
    if binary is not None:
        local = LocalRedis(binary, settings.state_dir / "redis")
        settings = settings.replace(redis_url=await asyncio.to_thread(local.start))
        # its queued asynchronous events are kept; the rest described the last run
        await asyncio.to_thread(local.drop_stale_keys)
    server = in_process_server() if uses_in_process_redis(settings) else None
    if server is not None:
        log.warning(
            "asynchronous events queued in the in-process Redis stand-in are lost when "
            "hotpool dev stops; install redis-server to keep them"
        )
    main_redis = make_redis(settings, server)
    manager_redis = make_redis(settings, server)
    try:
        main_app = create_app(settings, redis=main_redis)
        manager_app = create_manager_app(settings, redis=manager_redis)
        metrics = [
            *metrics_site(
                main_app[METRICS].exporter,
                settings.host,
                settings.metrics_port,
                settings,
                main_metrics_setting,
            ),
            *metrics_site(
                manager_app[MANAGER_METRICS].exporter,
                settings.manager_host,
                settings.manager_metrics_port,
                settings,
                manager_metrics_setting,
            ),
        ]
        # the metrics sites first: they stop answering before the apps they read close
        await _serve(
            [*metrics, (main_app, main_at), (manager_app, manager_at)],
            f"hotpool dev: Main on {main_at.url}, Manager on {manager_at.url} "
            f"(state in {settings.state_dir}/, Redis: {local.url if local else 'in-process'})"
            f"{metrics_note(metrics)}; Ctrl-C stops it",
            settings,
        )
    finally:
        with contextlib.suppress(Exception):
            await main_redis.aclose()
            await manager_redis.aclose()
        if local is not None:
            await asyncio.to_thread(local.stop)


async def run_main(settings: Settings) -> None:
    if not settings.manager_secret:
        raise SettingsError(
            "HOTPOOL_MANAGER_SECRET must be set to the secret the Managers were started with"
        )
    main_at = Address.claim(settings.host, settings.port, main_port_setting)
    app = create_app(settings.replace(port=main_at.port))
    metrics = metrics_site(
        app[METRICS].exporter, settings.host, settings.metrics_port, settings, main_metrics_setting
    )
    await _serve(
        [*metrics, (app, main_at)],
        f"hotpool main on {main_at.url}{metrics_note(metrics)}",
        settings,
    )


async def run_manager(settings: Settings) -> None:
    manager_at = Address.claim(settings.manager_host, settings.manager_port, manager_port_setting)
    app = create_manager_app(settings.replace(manager_port=manager_at.port))
    metrics = metrics_site(
        app[MANAGER_METRICS].exporter,
        settings.manager_host,
        settings.manager_metrics_port,
        settings,
        manager_metrics_setting,
    )
    await _serve(
        [*metrics, (app, manager_at)],
        f"hotpool manager on {manager_at.url}{metrics_note(metrics)}",
        settings,
    )


def run(coro_factory, settings: Settings) -> None:
    """Run a service on uvloop when available."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # at DEBUG the SQLite driver echoes statement parameters, function env values included
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        runner(coro_factory(settings))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # a busy port is a setting to change, not a crash: one line, as bad settings get
        raise SettingsError(
            f"a port is already in use ({exc.strerror}): another hotpool or program listens "
            "there; choose another with --port (0: any free one) or HOTPOOL_PORT / "
            "HOTPOOL_MANAGER_PORT"
        ) from None
