"""The aiohttp helpers shared by Main and Manager."""

from __future__ import annotations

import pytest
from aiohttp import web

from hotpool.shared.http import client_context

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


CLIENT = web.AppKey("client", FakeClient)


async def run_app(app: web.Application) -> FakeClient:
    """Start and stop the app; the client it held while it ran."""
    app.pre_freeze()  # as AppRunner does: signals frozen, state still settable
    await app.startup()
    client = app[CLIENT]
    await app.cleanup()
    return client


def app_with(given: FakeClient | None, opened: list[FakeClient]) -> web.Application:
    async def open_client(app: web.Application) -> FakeClient:
        opened.append(FakeClient())
        return opened[-1]

    app = web.Application()
    if given is not None:
        app[CLIENT] = given
    app.cleanup_ctx.append(client_context(CLIENT, open_client, lambda c: c.close()))
    return app


async def test_a_client_it_opens_is_closed_at_cleanup():
    opened: list[FakeClient] = []
    client = await run_app(app_with(None, opened))
    assert opened == [client] and client.closed


async def test_a_client_passed_in_is_used_and_left_open():
    given, opened = FakeClient(), []
    client = await run_app(app_with(given, opened))
    assert client is given and opened == [] and not given.closed
