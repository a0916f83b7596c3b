"""Deploying an ``App`` on a test stack, invoking it and reading its execution record."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from tests.lambda_compat.packages import App
from tests.stack import Stack, wait_for

T = TypeVar("T")

# Lambda's Python runtime's text log line: [LEVEL]\t<UTC ISO-8601 time>\t<request id>\t<message>
LOG_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|\+00:00)"


def log_line(level: str, request_id: str, message: str, *, literal: bool = True) -> re.Pattern[str]:
    """The Lambda runtime's log line of ``message`` (a regex unless ``literal``) at ``level``
    in one invocation."""
    text = re.escape(message) if literal else message
    return re.compile(rf"^\[{level}\]\t{LOG_TIME}\t{re.escape(request_id)}\t{text}$", re.M)


async def deploy(stack: Stack, app: App, **extra: Any) -> None:
    """Deploy ``app`` with its own settings (plus ``extra``); fail naming hotpool's answer."""
    resp = await stack.deploy(app.name, app.code, **app.deploy_params(**extra))
    assert resp.status == 201, f"deploying {app.name} ({app.handler}): {await resp.text()}"


async def invoke(stack: Stack, name: str, event: Any) -> tuple[Any, Any]:
    """Invoke through ``/invoke``; the response and its decoded JSON body."""
    resp = await stack.invoke(name, event)
    return resp, orjson.loads(await resp.read())


async def record(stack: Stack, name: str, request_id: str) -> dict[str, Any]:
    """The execution record of one invocation, once the batched writer stored it."""
    found: dict[str, Any] = {}

    async def stored() -> bool:
        resp = await stack.client.get(f"/v1/functions/{name}/invocations?limit=50")
        for item in (await resp.json())["invocations"]:
            if item["request_id"] == request_id:
                found.update(item)
        return bool(found)

    assert await wait_for(stored), f"no record of {name} request {request_id}"
    return found


def output(rec: dict[str, Any]) -> str:
    """What the invocation wrote: its captured stdout then stderr."""
    return (rec.get("stdout") or "") + (rec.get("stderr") or "")


async def off_loop(build: Callable[..., T], *args: Any) -> T:
    """Run a builder of apps.py or webapps.py from an async test: a first, uncached build
    downloads and installs for seconds, which must not stall the loop the stack serves on."""
    return await asyncio.to_thread(build, *args)
