"""A custom runtime's streamed response in the hotpool/runtime-provided image (Docker): a Go
function streaming with Go's standard library's chunked POST and trailers, as the Runtime API
documents it, through /invoke, SSE and a function URL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aiodocker
import aiohttp
import orjson
import pytest

from tests.lambda_compat import custom_runtimes, test_provided_docker
from tests.lambda_compat.harness import off_loop, record
from tests.lambda_compat.web import function_url
from tests.main_server.test_streaming_relay import sse_events

pytestmark = pytest.mark.integration
provided_stack = test_provided_docker.provided_stack  # the fixture: the image under test
# the test image's repository (an image function's name must be allowed by HOTPOOL_IMAGE_ALLOW)
IMAGE_REPOSITORY = "hotpool-test/go-stream"


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def deployed(stack) -> None:
    code = await off_loop(custom_runtimes.go_stream_package)
    resp = await stack.deploy(
        "go-stream", code, runtime="provided", handler="bootstrap", http="public"
    )
    assert resp.status == 201, await resp.text()


async def test_parts_reach_the_client_as_the_go_function_writes_them(provided_stack):
    stack = provided_stack
    await deployed(stack)
    resp = await stack.invoke("go-stream", {"mode": "plain"})
    assert resp.headers["X-Hotpool-Streamed"] == "true"
    parts = []
    while line := await resp.content.readline():
        parts.append((time.time() * 1000, line.decode()))
    assert [text.split(" at ")[0] for _, text in parts] == ["part 0", "part 1", "part 2"]
    last_made_ms = int(parts[-1][1].split(" at ")[1])
    assert parts[0][0] < last_made_ms  # the first part was out before the last was made
    rec = await record(stack, "go-stream", resp.headers["X-Hotpool-Request-Id"])
    assert rec["streamed"] is True and rec["bytes_streamed"] == sum(len(t) for _, t in parts)
    # SSE, from the same container
    resp = await stack.client.post(
        "/v1/functions/go-stream/invoke", json={}, headers={"Accept": "text/event-stream"}
    )
    events = sse_events(await resp.read())
    assert [data.split(" at ")[0] for _, data in events] == ["part 0", "part 1", "part 2"]
    assert resp.headers["X-Hotpool-Cold-Start"] == "false"


async def test_an_error_trailer_is_the_streams_error_marker(provided_stack):
    stack = provided_stack
    await deployed(stack)
    resp = await stack.invoke("go-stream", {"mode": "fail"})
    body = await resp.read()
    assert body.startswith(b"part 0")
    error = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert (error["errorType"], error["errorMessage"]) == ("GoError", "go failed mid-stream")


async def test_the_prelude_is_the_function_urls_status_and_headers(provided_stack):
    stack = provided_stack
    await deployed(stack)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{function_url(stack, 'go-stream')}/page") as resp:
            assert (resp.status, resp.headers["X-Lang"]) == (202, "go")
            body = await resp.read()
    assert [line.split(" at ")[0] for line in body.decode().splitlines()] == [
        "part 0", "part 1", "part 2"
    ]  # fmt: skip


async def test_a_client_leaving_mid_stream_leaves_the_container_serving(provided_stack):
    stack = provided_stack
    await deployed(stack)
    resp = await stack.invoke("go-stream", {"mode": "plain"})
    assert (await resp.content.readline()).startswith(b"part 0")
    request_id = resp.headers["X-Hotpool-Request-Id"]
    resp.close()
    rec = await record(stack, "go-stream", request_id)
    assert rec["aborted"] is True
    # Go's client reports the cut and polls again: the same container serves the next call
    again = await stack.invoke("go-stream", {"mode": "plain"})
    assert (await again.read()).count(b"part ") == 3
    assert again.headers["X-Hotpool-Cold-Start"] == "false"


@pytest.fixture
async def go_stream_image(tmp_path) -> AsyncIterator[str]:
    """A container image whose entrypoint is the streaming Go function (FROM scratch)."""
    binary = await off_loop(custom_runtimes.go_stream_binary)
    (tmp_path / "bootstrap").write_bytes(binary.read_bytes())
    (tmp_path / "bootstrap").chmod(0o755)
    (tmp_path / "Dockerfile").write_text(
        'FROM scratch\nCOPY bootstrap /bootstrap\nENTRYPOINT ["/bootstrap"]\n'
    )
    tag = f"{IMAGE_REPOSITORY}:go-stream-{uuid.uuid4().hex[:8]}"
    built = await asyncio.create_subprocess_exec(
        "docker", "build", "-q", "-t", tag, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await built.communicate()
    assert built.returncode == 0, output.decode()
    yield tag
    async with aiodocker.Docker() as docker:
        await docker.images.delete(tag, force=True)


async def test_an_image_function_streams_through_the_same_relay(hotpool_stack, go_stream_image):
    stack = await hotpool_stack(image_allow=IMAGE_REPOSITORY)
    resp = await stack.client.put(
        "/v1/functions/go-image", params={"image": go_stream_image, "http": "public"}
    )
    assert resp.status == 201, await resp.text()
    resp = await stack.invoke("go-image", {"mode": "fail"})
    body = await resp.read()
    assert resp.headers["X-Hotpool-Streamed"] == "true"
    assert body.count(b"part ") == 3
    error = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert error["errorType"] == "GoError"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{function_url(stack, 'go-image')}/page") as resp:
            assert (resp.status, resp.headers["X-Lang"]) == (202, "go")
            assert (await resp.read()).count(b"part ") == 3
