"""The streaming tests of tests/main_server/test_streaming.py again, with functions in Docker
containers (the production backend) instead of local processes. The tests whose handler
writes a marker file on the host run on the process backend only; a client leaving is checked
here by what Main sees (the record, the container back in the pool and serving on)."""

from __future__ import annotations

import pytest

from tests.main_server.test_streaming import (  # noqa: F401  (collected here on Docker)
    deployed,
    test_a_web_function_streams_its_body_after_the_heads_status_and_headers,
    test_an_error_after_the_first_byte_ends_the_stream_with_a_marker,
    test_items_reach_the_client_as_the_handler_yields_them,
    test_server_sent_events_one_event_per_item,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def test_a_client_that_leaves_aborts_the_stream_and_the_container_serves_on(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.invoke("gens", {"mode": "endless"})
    assert await resp.content.readline() == b"0\n"
    resp.close()  # the client hangs up mid-stream
    (entry,) = await stack.idle_entries("gens", 1)  # back in the pool, healthy
    [record] = await stack.records("gens", 1)
    assert record["aborted"] is True and record["status"] == "success"
    again = await stack.invoke("gens", {"mode": "lines"})
    assert await again.read() == b'two\nlines{"n": 2}\n'
    assert await stack.idle_entries("gens", 1) == [entry]
