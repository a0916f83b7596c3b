"""The web route (``/fn/{function}/...``) as an attacker sees it: another tenant's function
looks like no function at all, ``http=off`` is a 404, a public function's rate holds, a name
scan without a key is throttled, and hostile paths, headers and bodies get a 4xx and run
nothing."""

from __future__ import annotations

import asyncio
import json
import shutil

import aiohttp
import pytest

from tests.helpers import handler_zip
from tests.stack import wait_for

pytestmark = pytest.mark.integration

ECHO = handler_zip("return {'statusCode': 200, 'body': json.dumps(event)}", prelude="import json")
ANONYMOUS = {"Authorization": ""}


async def _deploy(stack, name: str, namespace: str = "default", **params) -> None:
    resp = await stack.client.put(
        f"/v1/functions/{name}", params={"namespace": namespace, **params}, data=ECHO,
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert resp.status == 201, await resp.text()


async def _invocations(stack, name: str, namespace: str = "default") -> list:
    resp = await stack.client.get(
        f"/v1/functions/{name}/invocations", params={"namespace": namespace}
    )
    return (await resp.json())["invocations"]


async def test_another_tenants_function_is_the_same_404_as_none(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "api", "alpha")
    await _deploy(stack, "api", "beta")
    await _deploy(stack, "dark", "alpha", http="off")
    alpha = {"Authorization": f"Bearer {await stack.key('alpha', 'invoke')}"}
    resp = await stack.client.get("/fn/alpha.api/x", headers=alpha)
    assert resp.status == 200
    answers = set()
    for path in ("/fn/beta.api/x", "/fn/alpha.nothing/x", "/fn/gamma.api/x", "/fn/alpha.dark/x"):
        resp = await stack.client.get(path, headers=alpha)
        assert resp.status == 404, path
        body = await resp.json()
        answers.add(body["error"]["message"].split("'")[0])
    assert len(answers) == 1
    beta = {"Authorization": f"Bearer {await stack.key('beta', 'invoke')}"}
    assert (await stack.client.get("/fn/beta.api/x", headers=beta)).status == 200
    await _exactly_one_record(stack, "api", "beta")
    assert await _invocations(stack, "dark", "alpha") == []


async def test_keys_without_invoke_or_for_another_function_cannot_call(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "api")
    await _deploy(stack, "other")
    reader = {"Authorization": f"Bearer {await stack.key('default', 'read')}"}
    resp = await stack.client.get("/fn/api/", headers=reader)
    assert resp.status == 403
    only_other = await stack.key("default", "invoke", function="other")
    resp = await stack.client.get("/fn/api/", headers={"Authorization": f"Bearer {only_other}"})
    assert resp.status == 404
    resp = await stack.client.get("/fn/other/", headers={"Authorization": f"Bearer {only_other}"})
    assert resp.status == 200
    assert await _invocations(stack, "api") == []


async def test_a_public_functions_rate_holds_and_is_its_own(hotpool_stack):
    stack = await hotpool_stack(public_rate_per_s=0.01, public_rate_burst=3)
    await _deploy(stack, "open", http="public")
    await _deploy(stack, "other", http="public")
    statuses = [(await stack.client.get("/fn/open/", headers=ANONYMOUS)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    resp = await stack.client.get("/fn/open/", headers=ANONYMOUS)
    assert int(resp.headers["Retry-After"]) >= 1
    # a key does not lift a public function's rate: its bucket is the function's
    resp = await stack.client.get("/fn/open/")
    assert resp.status == 429
    assert (await stack.client.get("/fn/other/", headers=ANONYMOUS)).status == 200

    async def three() -> bool:
        return len(await _invocations(stack, "open")) == 3

    assert await wait_for(three)
    await asyncio.sleep(0.3)  # a fourth record, if any, would be flushed by now
    assert len(await _invocations(stack, "open")) == 3


async def test_a_name_scan_without_a_key_is_throttled(hotpool_stack):
    stack = await hotpool_stack(auth_failure_burst=5, auth_failures_per_s=0.01)
    await _deploy(stack, "open", http="public")
    statuses = [
        (await stack.client.get(f"/fn/guess{i}/", headers=ANONYMOUS)).status for i in range(8)
    ]
    assert statuses[:4] == [401] * 4
    assert statuses[-1] == 429
    # the blocked address is refused before any lookup, public functions included
    assert (await stack.client.get("/fn/open/", headers=ANONYMOUS)).status == 429


async def test_http_off_is_a_404_even_for_a_cors_preflight(hotpool_stack):
    stack = await hotpool_stack()
    cors = json.dumps({"allow_origins": ["*"], "allow_methods": ["GET"]})
    await _deploy(stack, "dark", http="off", cors=cors)
    resp = await stack.client.get("/fn/dark/")
    assert resp.status == 404
    resp = await stack.client.options(
        "/fn/dark/",
        headers={"Origin": "https://a.example", "Access-Control-Request-Method": "GET"},
    )
    assert resp.status == 404
    assert "Access-Control-Allow-Origin" not in resp.headers


async def _raw_curl(*args: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("curl") or "curl", "-s", "-w", "\n%{http_code}", "--max-time", "30", *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    body, _, status = out.rpartition(b"\n")
    return int(status), body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_path_traversal_reaches_no_other_route(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "open", http="public")
    base = str(stack.client.make_url("/"))
    for path in ("fn/../v1/keys", "fn/%2e%2e/v1/keys", "fn/open%2f..%2f..%2fv1%2fkeys/",
                 "fn/..%2fv1%2fkeys/x"):  # fmt: skip
        status, _ = await _raw_curl("--path-as-is", base + path)
        assert status in (401, 404), (path, status)
    # dot segments after the function stay the function's: its app sees them as sent, as a
    # function URL's app does, and nothing of hotpool's answers
    for path in ("fn/open/../../v1/keys", "fn/open/%2e%2e/%2e%2e/v1/keys"):
        status, body = await _raw_curl("--path-as-is", base + path)
        assert status == 200, (path, status)
        event = json.loads(body)
        assert event["requestContext"]["apiId"] == "open"
        assert event["rawPath"] == path.removeprefix("fn/open")
    resp = await stack.client.get("/v1/keys")
    assert resp.status == 200


async def test_huge_headers_and_bodies_get_a_4xx_and_run_nothing(hotpool_stack):
    stack = await hotpool_stack(max_event_bytes=64 * 1024)
    await _deploy(stack, "open", http="public")
    url = stack.client.make_url("/fn/open/")
    async with aiohttp.ClientSession() as client:
        async with client.get(url, headers={"X-Big": "x" * 100_000}) as resp:
            assert 400 <= resp.status < 500
        many = {f"X-H{i}": "v" for i in range(200)}
        async with client.get(url, headers=many) as resp:
            assert 400 <= resp.status < 500
        async with client.post(url, data=b"x" * (64 * 1024 + 1)) as resp:
            assert resp.status == 413

        async def chunks():
            for _ in range(100):
                yield b"y" * 1024

        async with client.post(url, data=chunks()) as resp:  # no Content-Length
            assert resp.status == 413
        async with client.get(url) as resp:  # the one call that runs
            assert resp.status == 200
    await _exactly_one_record(stack, "open")


async def _exactly_one_record(stack, name: str, namespace: str = "default") -> None:
    """Once the one record a test expects is written, nothing else was run."""

    async def written() -> bool:
        return len(await _invocations(stack, name, namespace)) >= 1

    assert await wait_for(written)
    await asyncio.sleep(0.3)  # any other record would be flushed by now
    assert len(await _invocations(stack, name, namespace)) == 1


async def test_a_header_that_is_not_utf8_is_a_400(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "open", http="public")
    server = stack.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /fn/open/ HTTP/1.1\r\nHost: x\r\nX-Name: J\xc3\xbcrgen \xff\r\n"
                 b"Connection: close\r\n\r\n")  # fmt: skip
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"not valid UTF-8" in answer
    # a UTF-8 one reaches the app as it was sent
    resp = await stack.client.get("/fn/open/", headers={"X-Name": "Jürgen"})
    event = json.loads(await resp.read())
    assert event["headers"]["x-name"] == "Jürgen"


async def test_a_malformed_key_is_told_what_the_header_must_hold(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "keyed")
    for header, says in (
        ("Bearer wrongkey", "must be 'Bearer hp_<id>_<secret>'"),
        ("", "send an API key"),
    ):
        resp = await stack.client.get("/fn/keyed/x", headers={"Authorization": header})
        assert resp.status == 401
        assert says in (await resp.json())["error"]["message"], header
    assert await _invocations(stack, "keyed") == []
