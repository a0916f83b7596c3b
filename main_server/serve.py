"""Running the services: ``hotpool dev`` (Main and Manager in one process, embedded stores),
``hotpool main`` and ``hotpool manager`` (one service each, for production)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import fakeredis
from aiohttp import web

from main_server.app import create_app
from manager.app import create_manager_app
from shared.redis_conn import make_redis
from shared.settings import Settings

log = logging.getLogger(__name__)


async def _serve(apps: list[tuple[web.Application, str, int]], ready_message: str) -> None:
    runners = []
    try:
        for app, host, port in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            runners.append(runner)
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


async def run_dev(settings: Settings) -> None:
    """Main and Manager in one process with the embedded Redis stand-in."""
    server = fakeredis.FakeServer()
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
            f"(state in {settings.state_dir}/); Ctrl-C stops it",
        )
    finally:
        with contextlib.suppress(Exception):
            await main_redis.aclose()
            await manager_redis.aclose()


async def run_main(settings: Settings) -> None:
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
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    runner(coro_factory(settings))
