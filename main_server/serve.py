"""Running the services: ``hotpool dev`` (Main and Manager in one process, embedded stores),
``hotpool main`` and ``hotpool manager`` (one service each, for production)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal

from aiohttp import web

from hotpool.main_server.app import create_app
from hotpool.manager.app import create_manager_app
from hotpool.shared.auth import ALL_NAMESPACES
from hotpool.shared.keystore import SqlKeyStore
from hotpool.shared.local_redis import LocalRedis, wanted_binary
from hotpool.shared.redis_conn import in_process_server, make_redis, uses_in_process_redis
from hotpool.shared.settings import Settings, SettingsError
from hotpool.shared.stores import open_metadata

log = logging.getLogger(__name__)

# the collector's generation thresholds once a service is up (CPython's default: 700, 10, 10)
gc_thresholds = (50_000, 20, 20)


async def _serve(apps: list[tuple[web.Application, str, int]], ready_message: str) -> None:
    runners = []
    try:
        # every app is set up (the Manager registered in Redis) before any listens, and the
        # ones Main depends on listen first: Main's first call never finds no Manager
        for app, _, _ in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            # listed first: a set-up that fails half-way is cleaned up (what it opened closed)
            runners.append(runner)
            await runner.setup()
        for runner, (_, host, port) in reversed(list(zip(runners, apps, strict=True))):
            await web.TCPSite(runner, host, port).start()
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


async def run_dev(settings: Settings) -> None:
    """Main and Manager in one process, with the embedded Redis (``shared.local_redis``)."""
    if not settings.manager_secret:
        # both halves live in this process: a fresh secret per run is all they need
        settings = settings.replace(manager_secret=secrets.token_hex(32))
    created = await ensure_admin_key(settings)
    if created:
        print(
            f"created an admin API key (shown once; also stored in "
            f"{settings.state_dir / ADMIN_KEY_FILE}, where the CLI finds it):\n  {created}",
            flush=True,
        )
    local = None
    binary = wanted_binary(settings)
    if binary is not None:
        local = LocalRedis(binary, settings.state_dir / "redis")
        settings = settings.replace(redis_url=await asyncio.to_thread(local.start))
    server = in_process_server() if uses_in_process_redis(settings) else None
    main_redis = make_redis(settings, server)
    manager_redis = make_redis(settings, server)
    try:
        await _serve(
            [
                (create_app(settings, redis=main_redis), settings.host, settings.port),
                (
                    create_manager_app(settings, redis=manager_redis),
                    settings.manager_host,
                    settings.manager_port,
                ),
            ],
            f"hotpool dev: Main on http://{settings.host}:{settings.port} "
            f"(state in {settings.state_dir}/, Redis: {local.url if local else 'in-process'}); "
            "Ctrl-C stops it",
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
    await _serve(
        [(create_app(settings), settings.host, settings.port)],
        f"hotpool main on http://{settings.host}:{settings.port}",
    )


async def run_manager(settings: Settings) -> None:
    await _serve(
        [(create_manager_app(settings), settings.manager_host, settings.manager_port)],
        f"hotpool manager on http://{settings.manager_host}:{settings.manager_port}",
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
    runner(coro_factory(settings))
