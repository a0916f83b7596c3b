"""Input limits: deep events, huge headers, long names, big environments and bad namespaces get
a clear 4xx, never a 5xx, and create nothing (BRIEF §3 invariant 6)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from hotpool.main_server.state import FUNCTIONS
from tests.helpers import handler_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

ECHO = handler_zip("return 'ok'")


def nested(levels: int) -> bytes:
    """A JSON array nested ``levels`` deep."""
    return b"[" * levels + b"]" * levels


async def _everything(stack: Stack) -> tuple:
    """Every function of every namespace, and every stored code package."""
    functions = await stack.client.app[FUNCTIONS].list()
    packages = sorted(p.name for p in stack.settings.code_dir.glob("*"))
    return sorted((fv.name, fv.version) for fv in functions), packages


async def _error(resp: aiohttp.ClientResponse, *statuses: int) -> dict:
    text = await resp.text()
    assert resp.status in statuses, f"{resp.status} {text}"
    return orjson.loads(text)["error"]


async def test_event_depth_is_limited(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("echo", ECHO)).status == 201
    limit = stack.settings.max_event_depth
    assert limit == 128
    for levels in (100, limit):
        resp = await stack.invoke("echo", raw=nested(levels))
        assert resp.status == 200, (levels, await resp.text())
    deep = await stack.invoke("echo", raw=nested(limit + 1))
    error = await _error(deep, 400)
    assert error["code"] == "InvalidEvent" and str(limit) in error["message"]
    # brackets inside strings are text, not nesting
    flat = orjson.dumps({"text": "[" * 1000 + "{" * 1000})
    assert (await stack.invoke("echo", raw=flat)).status == 200
    # objects count as much as arrays
    deep_objects = b'{"a":' * (limit + 1) + b"1" + b"}" * (limit + 1)
    assert (await _error(await stack.invoke("echo", raw=deep_objects), 400))["code"] == (
        "InvalidEvent"
    )


async def test_a_lower_depth_limit_is_honoured(hotpool_stack):
    stack = await hotpool_stack(max_event_depth=5)
    assert (await stack.deploy("echo", ECHO)).status == 201
    assert (await stack.invoke("echo", raw=nested(5))).status == 200
    error = await _error(await stack.invoke("echo", raw=nested(6)), 400)
    assert "5" in error["message"]


async def test_an_oversized_header_is_a_4xx_and_the_server_carries_on(hotpool_stack):
    stack = await hotpool_stack()
    before = await _everything(stack)
    # aiohttp's server refuses header fields over 8190 bytes
    try:
        resp = await stack.client.put(
            "/v1/functions/big-header",
            data=ECHO,
            headers={"Content-Type": "application/zip", "X-Filler": "a" * 9000},
        )
        assert resp.status in (400, 431), await resp.text()
    except aiohttp.ServerDisconnectedError:
        pytest.fail("the server hung up instead of answering 400/431")
    assert await _everything(stack) == before
    assert (await stack.client.get("/v1/functions")).status == 200


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("x" * 64, {}, "function name"),
        ("ok", {"env": {f"V{i}": "1" for i in range(65)}}, "64"),
        ("ok", {"env": {"BIG": "x" * 4094}}, "4096"),
        ("ok", {"env": {f"V{i}": "x" * 400 for i in range(11)}}, "4096"),
        ("ok", {"env": {"1BAD": "x"}}, "env name"),
        ("ok", {"env": {"K": 1}}, "string"),
    ],
    ids=["name-64-chars", "env-65-vars", "env-one-big-value", "env-many-values",
         "env-bad-name", "env-not-string"],
)  # fmt: skip
async def test_limits_on_deploy_are_400_and_create_nothing(hotpool_stack, name, params, message):
    stack = await hotpool_stack()
    assert (await stack.deploy("keep", ECHO)).status == 201
    before = await _everything(stack)
    error = await _error(await stack.deploy(name, ECHO, **params), 400)
    assert error["code"] == "InvalidRequest" and message in error["message"], error
    assert await _everything(stack) == before


async def test_limits_are_inclusive(hotpool_stack):
    """At the limits themselves a deploy passes: 63 characters, 64 variables, 4096 bytes."""
    stack = await hotpool_stack()
    assert (await stack.deploy("x" * 63, ECHO)).status == 201
    many = {f"V{i:02d}": "1" for i in range(64)}
    assert (await stack.deploy("many", ECHO, env=many)).status == 201
    exact = {"BIG": "x" * (4096 - len("BIG"))}
    resp = await stack.deploy("exact", ECHO, env=exact)
    assert resp.status == 201, await resp.text()


BAD_NAMESPACES = ["Team-A", "team a", "%", "team_%", "../etc", "a" * 64, "", "team-a.x"]
NAMESPACE_ROUTES = [
    ("GET", "/v1/functions"),
    ("GET", "/v1/functions/keep"),
    ("PUT", "/v1/functions/keep"),
    ("DELETE", "/v1/functions/keep"),
    ("POST", "/v1/functions/keep/invoke"),
    ("GET", "/v1/functions/keep/invocations"),
]


@pytest.mark.parametrize("who", ["admin", "tenant"])
@pytest.mark.parametrize("namespace", BAD_NAMESPACES)
async def test_an_invalid_namespace_is_404_or_400(hotpool_stack, who, namespace):
    stack = await hotpool_stack()
    assert (await stack.deploy("keep", ECHO)).status == 201
    assert (await stack.deploy("keep", ECHO, namespace="team-a")).status == 201
    before = await _everything(stack)
    headers = {}
    if who == "tenant":
        headers["Authorization"] = f"Bearer {await stack.key('team-a')}"
    for method, path in NAMESPACE_ROUTES:
        resp = await stack.client.request(
            method, path, params={"namespace": namespace}, data=ECHO if method == "PUT" else b"{}",
            headers=headers | {"Content-Type": "application/zip" if method == "PUT"
                               else "application/json"},
        )  # fmt: skip
        error = await _error(resp, 400, 404)
        assert error["message"], (method, path)
    assert await _everything(stack) == before
