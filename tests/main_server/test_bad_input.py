"""Bad input gets a clear 4xx and changes nothing (BRIEF §3 invariant 6)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.helpers import handler_zip, make_zip

pytestmark = pytest.mark.integration

HELLO = handler_zip("return 'hi'")


async def _state(stack) -> tuple:
    functions = await (await stack.client.get("/v1/functions")).json()
    return functions, sorted(p.name for p in stack.settings.code_dir.glob("*"))


@pytest.mark.parametrize(
    ("name", "body", "params", "status", "message"),
    [
        ("Bad_Name", HELLO, {}, 400, "invalid function name"),
        ("x" * 70, HELLO, {}, 400, "invalid function name"),
        ("ok", b"this is not a zip", {}, 400, "zip"),
        ("ok", b"", {}, 400, "zip"),
        ("ok", make_zip({"../evil.py": "x = 1", "main.py": "def handler(e, c): pass"}), {}, 400,
         ".."),
        ("ok", make_zip({"other.py": "def handler(e, c): pass"}), {}, 400, "main.py"),
        ("ok", make_zip({"main.py": "def other(e, c): pass"}), {}, 400, "handler"),
        ("ok", make_zip({"main.py": "def handler(e, c) pass"}), {}, 400, "line"),
        ("ok", HELLO, {"memory_mb": "lots"}, 400, "memory_mb"),
        ("ok", HELLO, {"memory_mb": "1"}, 400, "memory_mb"),
        ("ok", HELLO, {"timeout_s": "99999"}, 400, "timeout_s"),
        ("ok", HELLO, {"runtime": "cobol"}, 400, "runtime"),
        ("ok", HELLO, {"handler": "nodot"}, 400, "handler"),
        ("ok", HELLO, {"env": "[1]"}, 400, "env"),
        ("ok", HELLO, {"env": "{not json"}, 400, "env"),
        ("ok", HELLO, {"colour": "red"}, 400, "unknown setting"),
    ],
)  # fmt: skip
async def test_bad_deploys_are_refused_and_change_nothing(
    hotpool_stack, name, body, params, status, message
):
    stack = await hotpool_stack()
    assert (await stack.deploy("keep", HELLO)).status == 201
    before = await _state(stack)
    resp = await stack.client.put(
        f"/v1/functions/{name}", data=body, params=params,
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert resp.status == status
    error = (await resp.json())["error"]
    assert message in error["message"], error
    assert await _state(stack) == before


async def test_oversized_package_is_413(hotpool_stack):
    stack = await hotpool_stack(max_package_bytes=10_000)
    big = make_zip({"main.py": "def handler(e, c): pass", "blob.bin": bytes(range(256)) * 100})
    big = big + b"\0" * 10_000  # over the limit however well it compresses
    resp = await stack.deploy("big", big)
    assert resp.status == 413
    assert "limit" in (await resp.json())["error"]["message"]
    assert (await stack.client.get("/v1/functions/big")).status == 404


async def test_zip_bomb_is_refused(hotpool_stack):
    stack = await hotpool_stack(max_unzipped_bytes=5 * 1024 * 1024)
    bomb = make_zip({"main.py": "def handler(e, c): pass", "zeros.bin": b"\0" * 20_000_000})
    resp = await stack.deploy("bomb", bomb)
    assert resp.status == 400
    assert (await stack.client.get("/v1/functions/bomb")).status == 404


async def test_wrong_content_type_is_explained(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.put(
        "/v1/functions/x", data=HELLO, headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 400
    assert "application/zip" in (await resp.json())["error"]["message"]


async def test_multipart_deploy(hotpool_stack):
    stack = await hotpool_stack()
    form = aiohttp.FormData()
    form.add_field("code", HELLO, filename="code.zip", content_type="application/zip")
    form.add_field("memory_mb", "192")
    form.add_field("env", '{"A": "1"}')
    resp = await stack.client.put("/v1/functions/multi", data=form)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["memory_mb"] == 192 and body["env"] == {"A": "***"}
    assert await (await stack.invoke("multi", {})).json() == "hi"
    form = aiohttp.FormData()
    form.add_field("memory_mb", "192")
    resp = await stack.client.put("/v1/functions/multi", data=form)
    assert resp.status == 400
    assert "code" in (await resp.json())["error"]["message"]


async def test_invoke_bad_input(hotpool_stack):
    stack = await hotpool_stack(max_event_bytes=1000)
    await stack.deploy("fn", HELLO)
    unknown = await stack.invoke("nope", {})
    assert unknown.status == 404
    assert "nope" in (await unknown.json())["error"]["message"]
    not_json = await stack.invoke("fn", raw=b"{not json")
    assert not_json.status == 400
    assert "JSON" in (await not_json.json())["error"]["message"]
    too_big = await stack.invoke("fn", {"blob": "x" * 2000})
    assert too_big.status == 413
    # none of that started a container or wrote a record
    assert stack.live_containers() == set()
    records = await (await stack.client.get("/v1/functions/fn/invocations")).json()
    assert records["invocations"] == []
    # an empty body is a null event
    assert (await stack.invoke("fn", raw=b"")).status == 200


async def test_default_event_limit_is_6_mb(hotpool_stack):
    stack = await hotpool_stack()
    await stack.deploy("fn", HELLO)
    resp = await stack.invoke("fn", raw=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert resp.status == 413


async def test_invocations_limit_is_validated(hotpool_stack):
    stack = await hotpool_stack()
    await stack.deploy("fn", HELLO)
    for bad in ("0", "-1", "abc", "100000"):
        resp = await stack.client.get(f"/v1/functions/fn/invocations?limit={bad}")
        assert resp.status == 400
        assert "limit" in (await resp.json())["error"]["message"]
    assert (await stack.client.get("/v1/functions/nope/invocations")).status == 404


async def test_unknown_route_and_method_are_json(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.get("/v1/nothing")
    assert resp.status == 404 and "error" in await resp.json()
    resp = await stack.client.post("/v1/functions")
    assert resp.status == 405 and "error" in await resp.json()
