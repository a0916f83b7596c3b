"""A Node.js function end to end on the embedded stack (process backend, the real
bootstrap.js): deploy with its runtime's default handler, a synchronous call, a streamed one,
the web /fn/ route, a function error in Lambda's shape, and pre-warmed generic containers of
both runtimes (HOTPOOL_PREWARM_RUNTIMES=python,nodejs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hotpool.shared.packages import zip_directory
from tests.helpers import make_zip
from tests.stack import Stack, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH (apt install nodejs)"),
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INDEX = make_zip(
    {
        "index.mjs": """
            import { greet } from './lib/greet.mjs';
            export const handler = async (event, context) => {
              console.log('called with', event);
              if (event.mode === 'fail') throw new RangeError(`no ${event.n}`);
              if (event.mode === 'stream') {
                return (async function* () { for (const w of ['a', 'b', 'c']) yield w + '\\n'; })();
              }
              if (event.rawPath !== undefined) {
                return { statusCode: 202, headers: { 'X-Runtime': process.env.AWS_EXECUTION_ENV },
                         body: greet(event.rawPath) };
              }
              return { greeting: greet(event.name), requestId: context.awsRequestId };
            };
        """,
        "lib/greet.mjs": "export const greet = (who) => `hello ${who}`;\n",
    }
)


async def deployed(stack: Stack, name: str = "node-fn", code: bytes = INDEX, **params) -> dict:
    resp = await stack.deploy(name, code, runtime="nodejs", http="public", **params)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def test_a_node_function_deploys_with_its_default_handler_and_answers(hotpool_stack):
    stack = await hotpool_stack()
    version = await deployed(stack)
    assert (version["runtime"], version["handler"]) == ("nodejs", "index.handler")

    resp = await stack.invoke("node-fn", {"name": "world"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {"greeting": "hello world", "requestId": resp.headers["X-Hotpool-Request-Id"]}
    [record] = await stack.records("node-fn", 1)
    assert record["status"] == "success"
    assert "\tINFO\tcalled with { name: 'world' }" in record["stdout"]
    await stack.idle_entries("node-fn", 1)


async def test_a_node_function_error_is_a_function_error_in_lambdas_shape(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.invoke("node-fn", {"mode": "fail", "n": 3})
    body = await resp.json()
    assert (body["errorType"], body["errorMessage"]) == ("RangeError", "no 3")
    assert body["stackTrace"][0] == "RangeError: no 3"
    assert body["trace"] == body["stackTrace"]  # Lambda's Node runtime's name for it
    assert any("index.mjs" in line for line in body["stackTrace"])
    [record] = await stack.records("node-fn", 1)
    assert record["error"] == {"type": "RangeError", "message": "no 3"}
    await stack.idle_entries("node-fn", 1)  # a function error: the container is sound


async def test_a_node_async_generator_streams_through_main(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.invoke("node-fn", {"mode": "stream"})
    assert resp.status == 200
    assert resp.headers["X-Hotpool-Streamed"] == "true"
    assert await resp.read() == b"a\nb\nc\n"
    [record] = await stack.records("node-fn", 1)
    assert record["streamed"] is True and record["bytes_streamed"] == 6


async def test_the_web_route_gets_api_gateways_event_and_the_answer_shape(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.client.get("/fn/node-fn/some/page")
    assert resp.status == 202, await resp.text()
    assert resp.headers["X-Runtime"].startswith("AWS_Lambda_nodejs")
    assert await resp.text() == "hello /some/page"


async def test_a_streamified_handler_answers_the_web_route_as_it_writes(hotpool_stack):
    stack = await hotpool_stack()
    source = (Path(__file__).parents[1] / "manager/nodejs_app/streamified.mjs").read_text()
    code = make_zip({"streamified.mjs": source})
    await deployed(stack, "streamer", code, handler="streamified.handler")
    resp = await stack.client.get("/fn/streamer/web")
    assert resp.status == 201 and resp.headers["X-Kind"] == "streamified"
    assert resp.headers["X-Hotpool-Streamed"] == "true"
    assert await resp.text() == "Hello, world!"


async def test_the_node_example_answers(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack, "hello-node", zip_directory(EXAMPLES / "hello_node"))
    resp = await stack.invoke("hello-node", {"name": "Ada"})
    body = await resp.json()
    assert body == {"message": "Hello, Ada!", "requestId": resp.headers["X-Hotpool-Request-Id"]}


async def test_a_node_handler_that_is_not_in_the_zip_is_refused_at_deploy(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.deploy("node-fn", INDEX, runtime="nodejs", handler="app.handler")
    assert resp.status == 400
    assert "handler file 'app' not found" in (await resp.json())["error"]["message"]
    resp = await stack.deploy("node-fn", INDEX, runtime="nodejs", handler="index")
    assert resp.status == 400
    assert "'file.export'" in (await resp.json())["error"]["message"]


async def test_prewarmed_containers_of_both_runtimes_serve_cold_starts(hotpool_stack):
    stack = await hotpool_stack(prewarm_count=1, prewarm_runtimes="python,nodejs")

    async def both_ready() -> bool:
        return all(stack.manager.prewarm.ready(runtime) == 1 for runtime in ("python", "nodejs"))

    assert await wait_for(both_ready, timeout_s=30)
    await deployed(stack)
    resp = await stack.invoke("node-fn", {"name": "prewarmed"})
    assert resp.status == 200 and (await resp.json())["greeting"] == "hello prewarmed"
    # the Node call took the pre-warmed node container, which now serves the function
    serving = [c for c in stack.manager.describe() if c["entry"] and c["runtime"] == "nodejs"]
    assert serving and all(c["prewarmed"] for c in serving)
    assert serving[0]["entry"].startswith("node-fn|1|")

    async def status_shows_it() -> bool:
        status = await (await stack.client.get("/system/status")).json()
        return status["containers"]["by_runtime"].get("nodejs", {}).get("warm") == 1

    assert await wait_for(status_shows_it)  # /system/status counts pools per runtime
