"""Item 6a: a function's return value is bounded; a huge one cannot swell Main's memory.

A function returning ~50 MB gets a clear error naming the limit and its setting, Main never
reads more than about the limit, and the function's next call works: the container's answer
was cut off by dropping its connection, and the container itself serves on.
"""

from __future__ import annotations

import re

import orjson
import pytest

from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

LIMIT_BYTES = 1024 * 1024
HUGE = handler_zip(
    """
    if event.get("huge"):
        return "x" * (50 * 1024 * 1024)
    return "small"
    """
)


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


def rss_bytes() -> int:
    """This process's resident memory (the stack runs in it), from /proc/self/status."""
    with open("/proc/self/status") as f:
        match = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    assert match is not None
    return int(match.group(1)) * 1024


async def test_a_huge_return_value_is_refused_naming_the_limit(hotpool_stack):
    stack = await hotpool_stack(max_response_bytes=LIMIT_BYTES)
    assert (await stack.deploy("huge", HUGE, memory_mb=512)).status == 201
    assert (await stack.invoke("huge", {})).status == 200  # warm: the container is started
    before = rss_bytes()
    resp = await stack.invoke("huge", {"huge": True})
    body = await resp.json()
    grown = rss_bytes() - before

    assert resp.status == 502
    assert body["error"]["code"] == "ResponseTooLarge"
    assert str(LIMIT_BYTES) in body["error"]["message"]
    assert "HOTPOOL_MAX_RESPONSE_BYTES" in body["error"]["message"]
    assert resp.headers["X-Hotpool-Function-Error"] == "ResponseTooLarge"
    # the 50 MB answer was never read into Main (nor its JSON re-encoding)
    assert grown < 20 * LIMIT_BYTES

    again = await stack.invoke("huge", {})
    assert again.status == 200
    assert again.headers["X-Hotpool-Cold-Start"] == "false"  # the same container, kept
    assert orjson.loads(await again.read()) == "small"


async def test_an_answer_within_the_limit_is_returned(hotpool_stack):
    stack = await hotpool_stack(max_response_bytes=LIMIT_BYTES)
    code = handler_zip('return "y" * (LIMIT - 100)', prelude=f"LIMIT = {LIMIT_BYTES}")
    assert (await stack.deploy("fits", code)).status == 201
    resp = await stack.invoke("fits", {})
    assert resp.status == 200
    assert len(orjson.loads(await resp.read())) == LIMIT_BYTES - 100
