"""A client that hangs up in the middle of its body costs one INFO line, not an ERROR traceback.

Any client can announce a 1 MB body, send a few bytes and close: cheap to repeat, and an ERROR
with a full traceback each time would bury real faults in the log (and page whoever watches it).
"""

from __future__ import annotations

import asyncio
import logging

import fakeredis
import pytest
from aiohttp import web

from hotpool.main_server.app import create_app
from hotpool.main_server.auth import AUTHENTICATOR
from hotpool.shared.settings import Settings
from tests.helpers import free_port
from tests.stack import wait_for

pytestmark = pytest.mark.integration

CUT_SHORT = [
    pytest.param("PUT", "/v1/functions/hello", "application/zip", id="deploy"),
    pytest.param("POST", "/v1/keys", "application/json", id="keys"),
]


async def _hang_up_mid_body(host: str, port: int, method: str, path: str, token: str, ctype: str):
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
        f'Content-Type: {ctype}\r\nContent-Length: {1024 * 1024}\r\n\r\n{{"a": '.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is reading the body when the client goes
    writer.close()
    await writer.wait_closed()


@pytest.fixture
async def main_served(tmp_path):
    """Main served as serve.py serves it (aiohttp's test server cancels the handler of a client
    that goes away, which hides what production does: the body read raises instead)."""
    redis = fakeredis.FakeAsyncRedis()
    app = create_app(Settings.from_env({}, state_dir=tmp_path), redis=redis)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    key, _ = await app[AUTHENTICATOR].keystore.create(namespaces=["*"], scopes="admin")
    yield port, f"Bearer {key.token}"
    await runner.cleanup()
    await redis.aclose()


@pytest.mark.parametrize(("method", "path", "ctype"), CUT_SHORT)
async def test_a_body_cut_short_logs_one_info_line(main_served, caplog, method, path, ctype):
    port, token = main_served
    caplog.set_level(logging.INFO)

    await _hang_up_mid_body("127.0.0.1", port, method, path, token, ctype)

    def disconnects() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "disconnected" in r.getMessage()]

    async def logged() -> bool:
        return bool(disconnects()) or any(r.levelno >= logging.ERROR for r in caplog.records)

    assert await wait_for(logged, timeout_s=5.0)
    await asyncio.sleep(0.2)  # anything else the same request would log
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [(r.levelname, r.getMessage()) for r in errors]
    [line] = disconnects()
    assert line.levelno == logging.INFO
    assert path in line.getMessage()
