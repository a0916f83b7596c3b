"""A streamed result (a generator handler) on a WebSocket: one message per item, sent as the
item completes, before the handler ends.

The first tests put a stand-in invoker (whose result streams as ``ports.ResultStream`` says)
behind a real socket, so they hold the relay alone; the last runs a generator handler end to
end, once the streaming invoke path (``main_server.stream``) is in the tree.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hotpool import main_server
from hotpool.main_server.invoke import Invocation
from hotpool.main_server.state import INVOKER
from tests.helpers import handler_zip
from tests.main_server.ws_clients import PRELUDE, deploy, ledger

pytestmark = pytest.mark.integration

ITEMS = [[b'{"step": ', b"1}\n"], [b"step 2"], [b"\xff\xfe"]]


class StandInStream:
    """A ResultStream whose items come ``gap_s`` apart; notes when it ended."""

    def __init__(self, gap_s: float, error: Exception | None = None) -> None:
        self.head: dict[str, Any] | None = None
        self.error: Exception | None = None
        self.ended_at: float | None = None
        self.aborted = False
        self._gap_s = gap_s
        self._error = error

    async def _items(self):
        for parts in ITEMS:
            await asyncio.sleep(self._gap_s)
            for i, part in enumerate(parts):
                if self.aborted:
                    return
                yield part, i == len(parts) - 1
        self.error = self._error
        self.ended_at = time.time()

    def __aiter__(self):
        return self._items()

    def abort(self) -> None:
        self.aborted = True


class StandInInvoker:
    """Answers $connect and $disconnect with nothing, and each message with a stream."""

    def __init__(self, gap_s: float = 0.1, error: Exception | None = None) -> None:
        self.streams: list[StandInStream] = []
        self.events: list[dict[str, Any]] = []
        self._gap_s = gap_s
        self._error = error

    @asynccontextmanager
    async def invocation(self, fv, event, request_id, admission=None, *, trigger="sync"):
        assert trigger == "websocket"
        self.events.append(orjson.loads(event))
        stream = None
        if self.events[-1]["requestContext"]["eventType"] == "MESSAGE":
            stream = StandInStream(self._gap_s, self._error)
            self.streams.append(stream)
        yield Invocation(request_id, 200, b"null", False, 1.0, stream=stream)


async def _stack_with(hotpool_stack, tmp_path, invoker: StandInInvoker):
    stack = await hotpool_stack()
    await deploy(stack, "gen", handler_zip("return None"))
    with warnings.catch_warnings():  # the app is started; the stand-in replaces its invoker
        warnings.simplefilter("ignore", DeprecationWarning)
        stack.client.app[INVOKER] = invoker  # type: ignore[assignment]
    return stack


async def test_each_item_is_a_message_sent_before_the_stream_ends(hotpool_stack, tmp_path):
    invoker = StandInInvoker(gap_s=0.2)
    stack = await _stack_with(hotpool_stack, tmp_path, invoker)
    async with stack.client.ws_connect("/ws/gen") as ws:
        await ws.send_str('{"action": "generate"}')
        received = []
        for _ in ITEMS:
            msg = await ws.receive(timeout=10)
            received.append((msg.type, msg.data, time.time()))
    (stream,) = invoker.streams
    assert stream.ended_at is not None
    assert [(kind, data) for kind, data, _ in received] == [
        (aiohttp.WSMsgType.TEXT, '{"step": 1}\n'),
        (aiohttp.WSMsgType.TEXT, "step 2"),
        (aiohttp.WSMsgType.BINARY, b"\xff\xfe"),
    ]
    # progress arrived while the handler was still producing
    assert received[0][2] < stream.ended_at
    assert received[1][2] < stream.ended_at


async def test_an_error_after_the_first_item_is_told_to_the_client(hotpool_stack, tmp_path):
    invoker = StandInInvoker(gap_s=0.01, error=RuntimeError("generator failed"))
    stack = await _stack_with(hotpool_stack, tmp_path, invoker)
    async with stack.client.ws_connect("/ws/gen") as ws:
        await ws.send_str("go")
        for _ in ITEMS:
            assert (await ws.receive(timeout=10)).type is not aiohttp.WSMsgType.CLOSE
        told = json.loads((await ws.receive(timeout=10)).data)
    assert told["message"] == "Internal server error"


async def test_a_client_gone_mid_stream_aborts_it_and_still_gets_disconnect(
    hotpool_stack, tmp_path
):
    invoker = StandInInvoker(gap_s=0.3)
    stack = await _stack_with(hotpool_stack, tmp_path, invoker)
    async with stack.client.ws_connect("/ws/gen") as ws:
        await ws.send_str("go")
        await ws.receive(timeout=10)  # the first item, then the client leaves
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not invoker.events[-1]["requestContext"]["eventType"] == "DISCONNECT":
        assert loop.time() < deadline, "no $disconnect"
        await asyncio.sleep(0.02)
    (stream,) = invoker.streams
    assert stream.aborted
    assert stream.ended_at is None  # it never produced its last items


GENERATOR = handler_zip(
    """
    _log(event, "start")
    if event["requestContext"]["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    return steps(event)
    """,
    prelude=PRELUDE
    + """
def steps(event):
    for n in range(3):
        yield {"progress": n}
        time.sleep(0.3)
    _log(event, "end")
    yield {"result": "done"}
""",
)


@pytest.mark.skipif(
    not (Path(main_server.__path__[0]) / "stream.py").exists(),
    reason="the streaming invoke path (main_server.stream, issue 15 part 1) is not merged",
)
async def test_a_generator_handlers_progress_arrives_before_it_ends(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "gen", GENERATOR, path)
    async with stack.client.ws_connect("/ws/gen") as ws:
        await ws.send_str('{"action": "generateProblem"}')
        received = []
        for _ in range(4):
            msg = await ws.receive(timeout=20)
            received.append((json.loads(msg.data), time.time()))
    assert [body for body, _ in received] == [
        {"progress": 0}, {"progress": 1}, {"progress": 2}, {"result": "done"}
    ]  # fmt: skip
    (end,) = ledger(path, "end")
    assert received[0][1] < end["at"]
