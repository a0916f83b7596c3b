"""Response streaming of a custom runtime (``runtime=provided``) through the whole stack, on
AWS's Node.js runtime interface client (``aws-lambda-ric``), whose Runtime API side streams as
it does on Lambda: a chunked POST in streaming mode, an error in its trailers, the
http-integration prelude of ``awslambda.HttpResponseStream.from``."""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from tests.lambda_compat import custom_runtimes
from tests.lambda_compat.harness import record
from tests.lambda_compat.sources import COMMAND_TIMEOUT_S
from tests.lambda_compat.web import function_url
from tests.main_server.test_streaming_relay import sse_events

# the module's package may be built here first (npm's aws-lambda-ric compiles its C++ client)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(COMMAND_TIMEOUT_S)]
MiB = 1024 * 1024

# A streaming handler as AWS's response streaming tutorial writes one (function URL metadata
# through HttpResponseStream.from, then writes with waits between them), with modes for the
# tests: the event's, or over the web route the last part of the path.
STREAMING_APP = """\
const { once } = require('events');

exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const mode = event.mode ?? event.rawPath?.split('/').pop();
  if (mode === 'web') {
    const httpResponseMetadata = {
      statusCode: 201,
      headers: { 'Content-Type': 'text/html', 'X-Custom-Header': 'Example-Custom-Header' },
      cookies: ['flavour=oat'],
    };
    responseStream = awslambda.HttpResponseStream.from(responseStream, httpResponseMetadata);
  }
  if (mode === 'flood') {  // 64 KiB writes until the stream refuses them
    const block = Buffer.alloc(65536, 'f');
    for (let i = 0; i < event.count; i++) {
      if (!responseStream.write(block)) await once(responseStream, 'drain');
    }
    responseStream.end();
    return;
  }
  if (mode === 'quick') return responseStream.end('quick');
  responseStream.write('<html>');
  if (mode === 'slow') await new Promise((r) => setTimeout(r, 10000));
  await new Promise((r) => setTimeout(r, 500));
  responseStream.write('<p>First write!</p>');
  await new Promise((r) => setTimeout(r, 500));
  if (mode === 'fail') throw new TypeError('failed mid-stream');
  console.log('ending at', Date.now());
  responseStream.write('</html>');
  responseStream.end();
});
"""


@pytest.fixture(scope="module")
def streaming_code() -> bytes:
    return custom_runtimes.node_ric_package(STREAMING_APP)


async def deployed(stack, code: bytes, name: str = "ric-stream") -> None:
    resp = await stack.deploy(
        name, code, runtime="provided", handler="index.handler", http="public", timeout_s=30
    )
    assert resp.status == 201, await resp.text()


async def test_items_reach_the_client_while_the_handler_still_writes(hotpool_stack, streaming_code):
    stack = await hotpool_stack()
    await deployed(stack, streaming_code)
    resp = await stack.invoke("ric-stream", {"mode": "plain"})
    assert resp.status == 200
    assert resp.headers["X-Hotpool-Streamed"] == "true"
    first = await resp.content.readexactly(len(b"<html>"))
    first_at_ms = time.time() * 1000
    rest = await resp.read()
    assert first + rest == b"<html><p>First write!</p></html>"
    rec = await record(stack, "ric-stream", resp.headers["X-Hotpool-Request-Id"])
    ended_at_ms = int(rec["stdout"].rsplit("ending at", 1)[1].split()[0])
    assert first_at_ms < ended_at_ms  # the first write was out before the handler's end
    assert rec["streamed"] is True and rec["status"] == "success"
    assert rec["bytes_streamed"] == len(first + rest)
    assert 0 < rec["first_byte_ms"] < rec["duration_ms"]
    # the runtime polls again: the same container answers the next call
    again = await stack.invoke("ric-stream", {"mode": "plain"})
    assert await again.read() == b"<html><p>First write!</p></html>"
    assert again.headers["X-Hotpool-Cold-Start"] == "false"


async def test_server_sent_events_one_event_per_write(hotpool_stack, streaming_code):
    stack = await hotpool_stack()
    await deployed(stack, streaming_code)
    resp = await stack.client.post(
        "/v1/functions/ric-stream/invoke", json={"mode": "plain"},
        headers={"Accept": "text/event-stream"},
    )  # fmt: skip
    assert resp.headers["Content-Type"] == "text/event-stream"
    events = sse_events(await resp.read())
    assert events == [("message", "<html>"), ("message", "<p>First write!</p>"),
                      ("message", "</html>")]  # fmt: skip


async def test_a_function_url_gets_the_status_headers_and_cookies_of_the_metadata(
    hotpool_stack, streaming_code
):
    stack = await hotpool_stack()
    await deployed(stack, streaming_code)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{function_url(stack, 'ric-stream')}/web") as resp:
            assert resp.status == 201
            assert resp.headers["Content-Type"] == "text/html"
            assert resp.headers["X-Custom-Header"] == "Example-Custom-Header"
            assert resp.headers["Set-Cookie"] == "flavour=oat"
            assert resp.headers["X-Hotpool-Streamed"] == "true"
            assert await resp.read() == b"<html><p>First write!</p></html>"


async def test_a_handler_failing_mid_stream_ends_it_with_the_error_marker(
    hotpool_stack, streaming_code
):
    stack = await hotpool_stack()
    await deployed(stack, streaming_code)
    resp = await stack.invoke("ric-stream", {"mode": "fail"})
    body = await resp.read()
    request_id = resp.headers["X-Hotpool-Request-Id"]
    assert body.startswith(b"<html><p>First write!</p>")
    error = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert error == {
        "errorType": "TypeError", "errorMessage": "failed mid-stream", "requestId": request_id
    }  # fmt: skip
    rec = await record(stack, "ric-stream", request_id)
    assert rec["status"] == "error" and rec["error"]["type"] == "TypeError"
    again = await stack.invoke("ric-stream", {"mode": "plain"})
    assert (again.status, again.headers["X-Hotpool-Cold-Start"]) == (200, "false")


async def test_a_client_leaving_mid_stream_cuts_the_runtimes_response_and_the_next_call_works(
    hotpool_stack, streaming_code
):
    stack = await hotpool_stack()
    await deployed(stack, streaming_code)
    resp = await stack.invoke("ric-stream", {"mode": "plain"})
    assert await resp.content.readexactly(len(b"<html>")) == b"<html>"
    request_id = resp.headers["X-Hotpool-Request-Id"]
    resp.close()  # the client hangs up mid-stream
    rec = await record(stack, "ric-stream", request_id)
    assert rec["aborted"] is True
    again = await stack.invoke("ric-stream", {"mode": "plain"})
    assert (again.status, await again.read()) == (200, b"<html><p>First write!</p></html>")
    # AWS's client (3.3.0) exits on its response's cut connection (an unhandled "socket hang
    # up" rejection): the relay ends the container with it, and the next call starts another
    assert "socket hang up" in rec["stdout"]
    assert again.headers["X-Hotpool-Cold-Start"] == "true"


async def test_over_max_stream_bytes_the_stream_is_cut_with_response_too_large(
    hotpool_stack, streaming_code
):
    stack = await hotpool_stack(max_stream_bytes=MiB)
    await deployed(stack, streaming_code)
    resp = await stack.invoke("ric-stream", {"mode": "flood", "count": 64})
    body = await resp.read()
    error = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert error["errorType"] == "ResponseTooLarge"
    assert len(body) - len(orjson.dumps({"hotpoolStreamError": error})) - 2 <= MiB
    rec = await record(stack, "ric-stream", resp.headers["X-Hotpool-Request-Id"])
    assert rec["error"]["type"] == "ResponseTooLarge" and rec["aborted"] is True
    again = await stack.invoke("ric-stream", {"mode": "plain"})
    assert (again.status, await again.read()) == (200, b"<html><p>First write!</p></html>")


async def test_the_stream_is_cut_at_the_timeout_and_the_container_replaced(
    hotpool_stack, streaming_code
):
    stack = await hotpool_stack()
    resp = await stack.deploy(
        "ric-slow", streaming_code, runtime="provided", handler="index.handler", timeout_s=1
    )
    assert resp.status == 201, await resp.text()
    resp = await stack.invoke("ric-slow", {"mode": "slow"})
    body = await resp.read()
    assert body.startswith(b"<html>")
    error = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert error["errorType"] == "Timeout", error
    rec = await record(stack, "ric-slow", resp.headers["X-Hotpool-Request-Id"])
    assert rec["status"] == "timeout"
    again = await stack.invoke("ric-slow", {"mode": "quick"})
    assert (await again.read(), again.headers["X-Hotpool-Cold-Start"]) == (b"quick", "true")
