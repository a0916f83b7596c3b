"""Helpers for the tests of asynchronous invocation's front door: accept an event over HTTP,
wait for it to end, look at the queue in Redis, and run a stack on fakeredis or on real Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis.asyncio
import redis.exceptions

from hotpool.shared import async_keys
from tests.helpers import handler_zip
from tests.services import REDIS_PORT, missing_service
from tests.stack import Stack, StackFactory, wait_for

# the real Redis database these tests flush (tests/services.py reserves 12, 14 and 15)
REAL_REDIS_DB = 12
EVENT = {"X-Hotpool-Invocation-Type": "Event"}
JSON = {"Content-Type": "application/json"}
ENDED = async_keys.FINAL

# returns what it saw, and appends one line per run to the $LEDGER file
LEDGER = handler_zip(
    """
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(json.dumps({"id": context.aws_request_id, "attempt": context.attempt}) + "\\n")
    return {"event": event, "attempt": context.attempt}
    """,
    prelude="import json, os",
)
# waits (at most 10 s) for its $GATE file, so that events stay queued until the test opens it
GATED = handler_zip(
    """
    for _ in range(500):
        if os.path.exists(os.environ["GATE"]):
            break
        time.sleep(0.02)
    return "through"
    """,
    prelude="import os, time",
)
FAST = {"async_retry_delays_s": "0.05", "async_consumer_timeout_s": 1}


async def ledger_stack(hotpool_stack, tmp_path, name: str = "fn", **settings) -> Stack:
    """A stack with ``name`` deployed: a handler that logs each run to tmp_path/ledger-{name}."""
    stack = await hotpool_stack(**FAST, **settings)
    ledger = tmp_path / f"ledger-{name}"
    ledger.touch()
    resp = await stack.deploy(name, LEDGER, env={"LEDGER": str(ledger)})
    assert resp.status == 201, await resp.text()
    return stack


def runs(tmp_path, name: str = "fn") -> list[dict]:
    """The ledger of ``name``: one entry per time its handler ran."""
    text = (tmp_path / f"ledger-{name}").read_text()
    return [orjson.loads(line) for line in text.splitlines()]


def keyed(key: str, **extra: str) -> dict[str, dict[str, str]]:
    return {"headers": EVENT | {"Idempotency-Key": key} | extra}


async def gated_stack(hotpool_stack, tmp_path, **settings) -> Stack:
    """A stack where "gated" in default and in team-b wait for tmp_path/gate."""
    stack = await hotpool_stack(**FAST, **settings)
    env = {"GATE": str(tmp_path / "gate")}
    for namespace in ("default", "team-b"):
        resp = await stack.client.put(
            "/v1/functions/gated",
            data=GATED,
            params={"namespace": namespace, "env": orjson.dumps(env).decode()},
            headers={"Content-Type": "application/zip"},
        )
        assert resp.status == 201, await resp.text()
    return stack


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(
    stack: Stack,
    name: str,
    event: Any = None,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Any:
    """POST the event to ``name``'s invoke route as an asynchronous call (unless ``headers`` or
    ``params`` say otherwise); the stack's admin key unless ``headers`` carry another."""
    data = raw if raw is not None else orjson.dumps(event)
    sent = JSON | (EVENT if headers is None and params is None else headers or {})
    return await stack.client.post(
        f"/v1/functions/{name}/invoke", data=data, headers=sent, params=params or {}
    )


async def accepted(resp: Any) -> str:
    """The request id of a 202 answer, checked against its status URL and Location."""
    text = await resp.text()
    assert resp.status == 202, f"{resp.status} {text}"
    body = orjson.loads(text)
    request_id = body["request_id"]
    assert body["status_url"] == f"/v1/invocations/{request_id}"
    assert resp.headers["Location"] == body["status_url"]
    assert resp.headers["X-Hotpool-Request-Id"] == request_id
    return request_id


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    """The JSON error of a response that must have ``status``."""
    text = await resp.text()
    assert resp.status == status, f"{resp.method} {resp.url}: {resp.status} {text}"
    return orjson.loads(text)["error"]


async def status_of(stack: Stack, request_id: str, key: str | None = None) -> Any:
    headers = bearer(key) if key is not None else {}
    return await stack.client.get(f"/v1/invocations/{request_id}", headers=headers)


async def settled(stack: Stack, request_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """The event's status once it has ended (it must, within ``timeout_s``)."""
    last: dict[str, Any] = {}

    async def ended() -> bool:
        nonlocal last
        resp = await status_of(stack, request_id)
        assert resp.status == 200, await resp.text()
        last = await resp.json()
        return last["status"] in ENDED

    assert await wait_for(ended, timeout_s=timeout_s), f"{request_id} never ended: {last}"
    return last


@dataclass(frozen=True)
class QueueShot:
    """What the asynchronous queue holds in Redis at one moment; equal shots before and after a
    request (with no event ending meanwhile) show that it queued nothing."""

    states: frozenset[str]  # hp:async:inv:* keys
    idempotency_keys: frozenset[str]
    # every live event is in its namespace's stream or in the delayed set and moves between
    # them in one script: their sum changes only when an event is queued or ends
    entries: int
    queued: dict[str, int]  # namespace -> events not ended


async def queue_shot(stack: Stack) -> QueueShot:
    redis = stack.redis
    states = {k.decode() async for k in redis.scan_iter(match=f"{async_keys.INV_PREFIX}*")}
    idem = {k.decode() async for k in redis.scan_iter(match=f"{async_keys.PREFIX}idem:*")}
    entries = await redis.zcard(async_keys.DELAYED)
    async for stream in redis.scan_iter(match=f"{async_keys.STREAM_PREFIX}*"):
        entries += await redis.xlen(stream)
    queued = {}
    for namespace in sorted(n.decode() for n in await redis.smembers(async_keys.NAMESPACES)):
        queued[namespace] = await redis.zcard(async_keys.queued(namespace))
    return QueueShot(frozenset(states), frozenset(idem), entries, queued)


@pytest.fixture
async def real_redis_url() -> AsyncIterator[str]:
    """The URL of the real Redis's test database, flushed before and after the test."""
    url = f"redis://127.0.0.1:{REDIS_PORT}/{REAL_REDIS_DB}"
    direct = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        try:
            await direct.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            missing_service(f"Redis not reachable at 127.0.0.1:{REDIS_PORT}: {exc}")
        await direct.flushdb()
        yield url
        await direct.flushdb()
    finally:
        await direct.aclose()


@pytest.fixture(params=["fakeredis", "redis"])
def redis_under_test(request: pytest.FixtureRequest) -> str | None:
    """None (the embedded stand-in), then the URL of the real Redis's test database."""
    return None if request.param == "fakeredis" else request.getfixturevalue("real_redis_url")


@pytest.fixture
async def any_redis_stack(redis_under_test: str | None, hotpool_stack) -> StackFactory:
    """``hotpool_stack`` on the embedded stand-in, then on the real Redis (set up before the
    stacks, so that it is flushed after they close)."""
    overrides = {"redis_url": redis_under_test} if redis_under_test else {}

    async def start(**settings: Any) -> Stack:
        return await hotpool_stack(**overrides, **settings)

    return start
