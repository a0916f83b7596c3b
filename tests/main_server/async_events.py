"""Helpers of the asynchronous invocation tests: a function that keeps a ledger of its runs,
sending an event, and waiting for its status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from hotpool.shared.async_keys import FINAL
from tests.helpers import handler_zip

# every run appends a line to the file $LEDGER names as it starts (the request id, the
# attempt, the event, the time); a body may add a line of another phase, "end" say
LEDGER_PRELUDE = """
import json, os, time

def _ledger(event, context, phase="start"):
    line = {"id": context.aws_request_id, "attempt": context.attempt, "event": event,
            "phase": phase, "at": time.time()}
    with open(os.environ["LEDGER"], "a") as f:
        f.write(json.dumps(line) + "\\n")
"""

# retries, throttle backoff and reclaims short enough for a test to wait them out
FAST = {
    "async_retry_delays_s": "0.05,0.1",
    "async_throttle_delay_s": 0.05,
    "async_consumer_timeout_s": 1,
    "lease_grace_s": 0.5,
}


def ledger_zip(body: str = "return {'ok': True}") -> bytes:
    """A package whose handler writes its ledger line, then runs ``body``."""
    return handler_zip("_ledger(event, context)\n" + body, prelude=LEDGER_PRELUDE)


def ledger(path: Path, phase: str = "start") -> list[dict[str, Any]]:
    """The ledger's lines of ``phase``, oldest first (none before the first run)."""
    if not path.exists():
        return []
    lines = [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["phase"] == phase]


async def send(client: Any, name: str, event: Any = None, **headers: str) -> str:
    """Send ``event`` to ``name`` as an asynchronous call; its request id (asserts the 202)."""
    resp = await client.post(
        f"/v1/functions/{name}/invoke",
        data=orjson.dumps(event),
        headers={
            "Content-Type": "application/json",
            "X-Hotpool-Invocation-Type": "Event",
            **headers,
        },
    )
    body = await resp.json()
    assert resp.status == 202, body
    return body["request_id"]


async def status(client: Any, request_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/invocations/{request_id}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def wait_status(
    client: Any, request_id: str, wanted: tuple[str, ...] = FINAL, timeout_s: float = 20.0
) -> dict[str, Any]:
    """The event's status once it is one of ``wanted`` (asserts it gets there in time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        current = await status(client, request_id)
        if current["status"] in wanted:
            return current
        assert loop.time() < deadline, f"{request_id} still {current} after {timeout_s} s"
        await asyncio.sleep(0.05)


async def records(client: Any, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The function's execution records, once written (newest first)."""
    resp = await client.get(f"/v1/functions/{name}/invocations", params={"limit": str(limit)})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["invocations"]
