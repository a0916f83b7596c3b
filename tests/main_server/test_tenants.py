"""Tenants are walled off from each other: a key of team-b cannot see, call, change or read the
records of team-a's functions (another tenant's function is a 404, never a 403), every route but
/healthz wants a valid key, scopes hold inside a namespace, and keys are managed by admins only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import fakeredis
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hotpool.main_server.app import create_app
from hotpool.main_server.state import FUNCTIONS
from hotpool.shared.auth import KEY_RE, hash_secret
from tests.helpers import handler_zip
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.integration

A_SHARED = handler_zip("return {'owner': 'a'}")
B_SHARED = handler_zip("return {'owner': 'b'}")
ONLY_A = handler_zip("return 'only-a'")
ZIP = {"Content-Type": "application/zip"}
JSON = {"Content-Type": "application/json"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(token: str) -> str:
    match = KEY_RE.match(token)
    assert match is not None, token
    return match.group(1)


async def call(
    stack: Stack,
    method: str,
    path: str,
    key: str,
    *,
    namespace: str | None = None,
    body: bytes | None = None,
) -> aiohttp.ClientResponse:
    """``method path`` with ``key`` instead of the stack's admin key; PUT sends a zip."""
    headers = bearer(key) | (ZIP if method == "PUT" else JSON)
    if body is None:
        body = ONLY_A if method == "PUT" else b"{}"
    params = {"namespace": namespace} if namespace is not None else {}
    return await stack.client.request(method, path, headers=headers, params=params, data=body)


async def error_of(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The JSON error of a response that must have ``status``."""
    text = await resp.text()
    assert resp.status == status, f"{resp.method} {resp.url}: {resp.status} {text}"
    assert resp.content_type == "application/json", text
    return orjson.loads(text)["error"]


@dataclass
class Tenants:
    stack: Stack
    a: str  # key of team-a: deploy, invoke, read
    b: str  # key of team-b: deploy, invoke, read


@pytest.fixture
async def tenants(hotpool_stack) -> Tenants:
    """team-a owns shared-name and only-a, team-b its own shared-name, each deployed by itself."""
    stack = await hotpool_stack()
    a = await stack.key("team-a")
    b = await stack.key("team-b")
    for key, name, code in [(a, "shared-name", A_SHARED), (a, "only-a", ONLY_A),
                            (b, "shared-name", B_SHARED)]:  # fmt: skip
        resp = await call(stack, "PUT", f"/v1/functions/{name}", key, body=code)
        assert resp.status == 201, await resp.text()
    return Tenants(stack, a, b)


async def _snapshot(stack: Stack, name: str, namespace: str) -> dict[str, Any]:
    resp = await stack.client.get(f"/v1/functions/{name}", params={"namespace": namespace})
    assert resp.status == 200, await resp.text()
    return await resp.json()


# -- one name, two tenants --------------------------------------------------------------------


async def test_the_same_name_in_two_namespaces_is_two_functions(tenants):
    stack, a, b = tenants.stack, tenants.a, tenants.b
    assert await (await call(stack, "POST", "/v1/functions/shared-name/invoke", a)).json() == {
        "owner": "a"
    }
    assert await (await call(stack, "POST", "/v1/functions/shared-name/invoke", b)).json() == {
        "owner": "b"
    }
    got_a = await (await call(stack, "GET", "/v1/functions/shared-name", a)).json()
    got_b = await (await call(stack, "GET", "/v1/functions/shared-name", b)).json()
    assert (got_a["namespace"], got_b["namespace"]) == ("team-a", "team-b")
    assert got_a["code_sha256"] != got_b["code_sha256"]
    assert got_a["version"] == got_b["version"] == 1
    listed_a = (await (await call(stack, "GET", "/v1/functions", a)).json())["functions"]
    listed_b = (await (await call(stack, "GET", "/v1/functions", b)).json())["functions"]
    assert sorted((f["namespace"], f["name"]) for f in listed_a) == [
        ("team-a", "only-a"), ("team-a", "shared-name")
    ]  # fmt: skip
    assert [(f["namespace"], f["name"]) for f in listed_b] == [("team-b", "shared-name")]


# -- every endpoint, from the other side -------------------------------------------------------

# (method, path): what team-b tries on team-a's functions
FUNCTION_ENDPOINTS = [
    ("GET", "/v1/functions/{name}"),
    ("DELETE", "/v1/functions/{name}"),
    ("POST", "/v1/functions/{name}/invoke"),
    ("GET", "/v1/functions/{name}/invocations"),
]


@pytest.mark.parametrize(("method", "path"), FUNCTION_ENDPOINTS)
@pytest.mark.parametrize("namespace", [None, "team-a"])
async def test_another_tenants_function_is_404_on_every_endpoint(tenants, method, path, namespace):
    stack, b = tenants.stack, tenants.b
    before = await _snapshot(stack, "only-a", "team-a")
    names = ["only-a"] if namespace is None else ["only-a", "shared-name"]
    for name in names:
        resp = await call(stack, method, path.format(name=name), b, namespace=namespace)
        error = await error_of(resp, 404)
        assert error["code"] == "NotFound"
        assert "X-Hotpool-Function-Error" not in resp.headers
    await _assert_team_a_untouched(tenants, before)


async def test_another_tenant_cannot_deploy_into_its_namespace(tenants):
    stack, b = tenants.stack, tenants.b
    before = await _snapshot(stack, "only-a", "team-a")
    for name in ("only-a", "shared-name", "brand-new"):
        resp = await call(
            stack, "PUT", f"/v1/functions/{name}", b, namespace="team-a", body=B_SHARED
        )
        assert (await error_of(resp, 404))["code"] == "NotFound"
    # the same name without ?namespace= is a function of team-b's own, not a change to team-a's
    resp = await call(stack, "PUT", "/v1/functions/only-a", b, body=B_SHARED)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["namespace"] == "team-b"
    assert await (await call(stack, "POST", "/v1/functions/only-a/invoke", b)).json() == {
        "owner": "b"
    }
    await _assert_team_a_untouched(tenants, before)
    admin_view = await stack.client.app[FUNCTIONS].list("team-a")
    assert sorted(fv.short_name for fv in admin_view) == ["only-a", "shared-name"]


async def _assert_team_a_untouched(tenants: Tenants, before: dict[str, Any]) -> None:
    stack, a = tenants.stack, tenants.a
    assert await _snapshot(stack, "only-a", "team-a") == before
    resp = await call(stack, "POST", "/v1/functions/only-a/invoke", a)
    assert resp.status == 200 and await resp.json() == "only-a"
    resp = await call(stack, "POST", "/v1/functions/shared-name/invoke", a)
    assert await resp.json() == {"owner": "a"}


async def test_a_404_does_not_tell_whether_the_other_namespace_exists(tenants):
    """team-a (which exists) and team-zzz (which does not) look the same to team-b."""
    stack, b = tenants.stack, tenants.b
    for method, path in [*FUNCTION_ENDPOINTS, ("GET", "/v1/functions"), ("PUT", "/v1/functions/x")]:
        seen = []
        for namespace in ("team-a", "team-zzz"):
            resp = await call(stack, method, path.format(name="only-a"), b, namespace=namespace)
            error = await error_of(resp, 404)
            seen.append(error["message"].replace(namespace, "<ns>"))
        assert seen[0] == seen[1], (method, path, seen)


async def test_listing_never_shows_another_tenants_functions(tenants):
    stack, b = tenants.stack, tenants.b
    listed = (await (await call(stack, "GET", "/v1/functions", b)).json())["functions"]
    assert {f["namespace"] for f in listed} == {"team-b"}
    assert "only-a" not in await (await call(stack, "GET", "/v1/functions", b)).text()
    resp = await call(stack, "GET", "/v1/functions", b, namespace="team-a")
    assert (await error_of(resp, 404))["code"] == "NotFound"


async def test_namespace_names_are_matched_exactly_in_listings(tenants):
    """'_' is a LIKE wildcard in SQL: team_a must not list team-a's functions."""
    stack = tenants.stack
    lookalike = await stack.key("team_a")
    resp = await call(stack, "GET", "/v1/functions", lookalike)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["functions"] == []
    # and the admin's view of team_a is empty too
    resp = await stack.client.get("/v1/functions", params={"namespace": "team_a"})
    assert (await resp.json())["functions"] == []


async def test_records_of_another_tenant_are_unreadable(tenants):
    stack, a, b = tenants.stack, tenants.a, tenants.b
    ids_a = []
    for _ in range(2):
        resp = await call(stack, "POST", "/v1/functions/shared-name/invoke", a)
        ids_a.append(resp.headers["X-Hotpool-Request-Id"])
    resp = await call(stack, "POST", "/v1/functions/shared-name/invoke", b)
    ids_b = [resp.headers["X-Hotpool-Request-Id"]]

    async def records(key: str, n: int) -> list[dict]:
        async def enough() -> bool:
            resp = await call(stack, "GET", "/v1/functions/shared-name/invocations", key)
            return len((await resp.json())["invocations"]) >= n

        assert await wait_for(enough)
        resp = await call(stack, "GET", "/v1/functions/shared-name/invocations", key)
        body = await resp.json()
        return body["invocations"]

    assert sorted(r["request_id"] for r in await records(a, 2)) == sorted(ids_a)
    assert [r["request_id"] for r in await records(b, 1)] == ids_b
    resp = await call(stack, "GET", "/v1/functions/shared-name/invocations", b, namespace="team-a")
    text = await resp.text()
    assert resp.status == 404 and not any(i in text for i in ids_a)


# -- no valid key, no entry --------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/functions"),
    ("PUT", "/v1/functions/f"),
    ("GET", "/v1/functions/f"),
    ("DELETE", "/v1/functions/f"),
    ("POST", "/v1/functions/f/invoke"),
    ("GET", "/v1/functions/f/invocations"),
    ("GET", "/v1/invocations/00000000-0000-4000-8000-000000000000"),
    ("GET", "/v1/functions/f/dead-letters"),
    ("POST", "/v1/functions/f/dead-letters/redrive"),
    ("DELETE", "/v1/functions/f/dead-letters/00000000-0000-4000-8000-000000000000"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/system/status"),
    ("GET", "/v1/no-such-route"),
]
CREDENTIALS = ["none", "Bearer nope", "Basic abc", "unknown key", "wrong secret", "revoked key"]


async def _authorization(stack: Stack, credential: str) -> str | None:
    """The Authorization header of ``credential`` (None: no header at all)."""
    if credential == "none":
        return None
    if credential in ("Bearer nope", "Basic abc"):
        return credential
    if credential == "unknown key":
        return f"Bearer hp_{'0' * 16}_{'A' * 43}"
    token = await stack.key("default", "admin")
    if credential == "wrong secret":
        return f"Bearer hp_{key_id(token)}_{'B' * 43}"
    # revoked after it was used (and so cached) on this replica
    assert (await stack.client.get("/v1/functions", headers=bearer(token))).status == 200
    assert (await stack.client.delete(f"/v1/keys/{key_id(token)}")).status == 200
    return f"Bearer {token}"


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_wants_a_valid_key(hotpool_stack, method, path):
    """Each route against every kind of missing or bad credential (one stack per route)."""
    stack = await hotpool_stack()
    assert (await stack.deploy("f", ONLY_A)).status == 201
    victim = await stack.key("default", "admin")  # the key the DELETE /v1/keys route targets
    url = stack.client.make_url(path.format(key_id=key_id(victim)))
    # a session of its own: the stack's client would add its admin key
    async with aiohttp.ClientSession() as session:
        for credential in CREDENTIALS:
            authorization = await _authorization(stack, credential)
            headers = {"Authorization": authorization} if authorization is not None else {}
            async with session.request(method, url, headers=headers, data=b"{}") as resp:
                text = await resp.text()
                assert resp.status == 401, (credential, text)
                assert resp.content_type == "application/json", (credential, text)
                error = orjson.loads(text)["error"]
            assert error["code"] == "Unauthorized" and error["message"], (credential, error)
    # nothing was done: the function and the targeted key are still there
    got = await stack.client.get("/v1/functions/f")
    assert got.status == 200 and (await got.json())["version"] == 1
    assert (await stack.client.get("/v1/keys", headers=bearer(victim))).status == 200


async def test_healthz_is_open_and_system_status_is_for_admins(hotpool_stack):
    stack = await hotpool_stack()
    async with aiohttp.ClientSession() as session:
        async with session.get(stack.client.make_url("/healthz")) as resp:
            assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
        async with session.get(stack.client.make_url("/system/status")) as resp:
            assert resp.status == 401
    tenant = await stack.key("team-a", "deploy,invoke,read")
    resp = await stack.client.get("/system/status", headers=bearer(tenant))
    assert (await error_of(resp, 403))["code"] == "Forbidden"
    resp = await stack.client.get("/system/status")
    assert resp.status == 200 and (await resp.json())["managers_online"] == 1


# -- scopes inside one's own namespace ---------------------------------------------------------


async def test_an_invoke_only_key_can_only_invoke(tenants):
    stack = tenants.stack
    key = await stack.key("team-a", "invoke")
    resp = await call(stack, "POST", "/v1/functions/only-a/invoke", key)
    assert resp.status == 200 and await resp.json() == "only-a"
    for method, path, scope in [
        ("PUT", "/v1/functions/only-a", "deploy"),
        ("PUT", "/v1/functions/new-one", "deploy"),
        ("DELETE", "/v1/functions/only-a", "deploy"),
        ("GET", "/v1/functions/only-a", "read"),
        ("GET", "/v1/functions/only-a/invocations", "read"),
        ("GET", "/v1/functions", "read"),
    ]:
        error = await error_of(await call(stack, method, path, key), 403)
        assert error["code"] == "Forbidden" and scope in error["message"], (method, path)
    assert (await _snapshot(stack, "only-a", "team-a"))["version"] == 1


async def test_a_read_only_key_cannot_invoke_or_deploy(tenants):
    stack = tenants.stack
    key = await stack.key("team-a", "read")
    assert (await call(stack, "GET", "/v1/functions/only-a", key)).status == 200
    assert (await call(stack, "GET", "/v1/functions/only-a/invocations", key)).status == 200
    assert (await call(stack, "GET", "/v1/functions", key)).status == 200
    error = await error_of(await call(stack, "POST", "/v1/functions/only-a/invoke", key), 403)
    assert "invoke" in error["message"]
    await error_of(await call(stack, "PUT", "/v1/functions/only-a", key), 403)
    await error_of(await call(stack, "DELETE", "/v1/functions/only-a", key), 403)


# -- keys for one function ---------------------------------------------------------------------


@pytest.mark.parametrize("made_by", ["keystore", "api"])
async def test_a_function_key_invokes_its_function_only(tenants, made_by):
    stack = tenants.stack
    if made_by == "keystore":
        # the keystore wants the qualified name: namespace.name
        key = await stack.key("team-a", "invoke", function="team-a.only-a")
    else:
        resp = await stack.client.post(
            "/v1/keys", json={"namespace": "team-a", "function": "only-a"}
        )
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        assert created["function"] == "team-a.only-a" and created["scopes"] == ["invoke"]
        key = created["key"]
    resp = await call(stack, "POST", "/v1/functions/only-a/invoke", key)
    assert resp.status == 200 and await resp.json() == "only-a"
    # any other function is unseen, in its namespace or elsewhere
    for path, namespace in [
        ("/v1/functions/shared-name/invoke", None),
        ("/v1/functions/shared-name/invoke", "team-b"),
        ("/v1/functions/only-a/invoke", "team-b"),
        ("/v1/functions/nothing/invoke", None),
    ]:
        resp = await call(stack, "POST", path, key, namespace=namespace)
        assert (await error_of(resp, 404))["code"] == "NotFound", (path, namespace)
    # listing and deploying anything else: unseen; its own function: invoke only
    await error_of(await call(stack, "GET", "/v1/functions", key), 404)
    await error_of(await call(stack, "PUT", "/v1/functions/new-one", key), 404)
    await error_of(await call(stack, "GET", "/v1/functions/shared-name", key), 404)
    for method, path in [
        ("PUT", "/v1/functions/only-a"),
        ("DELETE", "/v1/functions/only-a"),
        ("GET", "/v1/functions/only-a"),
        ("GET", "/v1/functions/only-a/invocations"),
    ]:
        await error_of(await call(stack, method, path, key), 403)
    await error_of(await call(stack, "GET", "/v1/keys", key), 403)
    assert (await _snapshot(stack, "only-a", "team-a"))["version"] == 1


# -- the keys API ------------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_never_listed(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.post(
        "/v1/keys", json={"namespaces": ["team-a"], "scopes": ["read"], "description": "ci"}
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    token = created["key"]
    _, secret = KEY_RE.match(token).groups()
    assert created["key_id"] == key_id(token)
    assert created["namespaces"] == ["team-a"] and created["scopes"] == ["read"]
    assert (await call(stack, "GET", "/v1/functions", token)).status == 200
    listing = await stack.client.get("/v1/keys")
    text = await listing.text()
    assert listing.status == 200
    assert created["key_id"] in text
    for leaked in (token, secret, hash_secret(secret)):
        assert leaked not in text
    listed = {k["key_id"]: k for k in (await listing.json())["keys"]}
    assert "key" not in listed[created["key_id"]]
    assert listed[created["key_id"]]["revoked"] is False


async def test_only_admins_manage_keys(hotpool_stack):
    stack = await hotpool_stack()
    tenant = await stack.key("team-a", "deploy,invoke,read")
    other = await stack.key("team-a", "read")
    for method, path, body in [
        ("POST", "/v1/keys", {"namespace": "team-a", "scopes": "admin"}),
        ("GET", "/v1/keys", None),
        ("DELETE", f"/v1/keys/{key_id(other)}", None),
    ]:
        resp = await stack.client.request(method, path, json=body, headers=bearer(tenant))
        assert (await error_of(resp, 403))["code"] == "Forbidden"
    assert (await call(stack, "GET", "/v1/functions", other)).status == 200


async def test_a_namespaced_admin_manages_its_namespace_only(hotpool_stack):
    stack = await hotpool_stack()
    admin_a = await stack.key("team-a", "admin")
    key_b = await stack.key("team-b", "invoke")
    resp = await stack.client.post(
        "/v1/keys", json={"namespace": "team-b", "scopes": "invoke"}, headers=bearer(admin_a)
    )
    assert (await error_of(resp, 404))["code"] == "NotFound"
    resp = await stack.client.post(
        "/v1/keys", json={"namespaces": ["team-a", "team-b"], "scopes": "invoke"},
        headers=bearer(admin_a),
    )  # fmt: skip
    await error_of(resp, 404)
    resp = await stack.client.post(
        "/v1/keys", json={"namespaces": ["*"], "scopes": "admin"}, headers=bearer(admin_a)
    )
    await error_of(resp, 404)
    resp = await stack.client.post(
        "/v1/keys", json={"namespace": "team-a", "scopes": "invoke"}, headers=bearer(admin_a)
    )
    assert resp.status == 201, await resp.text()
    listed = (await (await stack.client.get("/v1/keys", headers=bearer(admin_a))).json())["keys"]
    assert {tuple(k["namespaces"]) for k in listed} == {("team-a",)}
    assert key_id(key_b) not in {k["key_id"] for k in listed}
    resp = await stack.client.delete(f"/v1/keys/{key_id(key_b)}", headers=bearer(admin_a))
    await error_of(resp, 404)
    assert (await call(stack, "GET", "/v1/functions", key_b)).status == 403  # alive: no read


async def test_revocation_reaches_another_replica_within_seconds(hotpool_stack):
    # a long cache TTL: only the announcement can make the other replica forget in time
    stack = await hotpool_stack(key_cache_ttl_s=60.0)
    token = await stack.key("team-a", "read")
    replica = TestClient(
        TestServer(
            create_app(stack.settings, redis=fakeredis.FakeAsyncRedis(server=stack.fake_server))
        )
    )
    await replica.start_server()
    try:
        assert (await replica.get("/v1/functions", headers=bearer(token))).status == 200
        assert (await stack.client.delete(f"/v1/keys/{key_id(token)}")).status == 200
        assert (await call(stack, "GET", "/v1/functions", token)).status == 401
        assert (await stack.client.delete(f"/v1/keys/{key_id(token)}")).status == 404

        async def refused() -> bool:
            resp = await replica.get("/v1/functions", headers=bearer(token))
            return resp.status == 401

        assert await wait_for(refused, timeout_s=5.0)
        listed = (await (await stack.client.get("/v1/keys")).json())["keys"]
        assert {k["key_id"]: k["revoked"] for k in listed}[key_id(token)] is True
    finally:
        await replica.close()


# -- rate and concurrency limits ---------------------------------------------------------------


async def test_a_burst_over_the_rate_gets_429_then_passes_again(hotpool_stack):
    stack = await hotpool_stack(rate_per_s=2, rate_burst=2)
    key = await stack.key("team-a", "read")
    burst = await asyncio.gather(*(call(stack, "GET", "/v1/functions", key) for _ in range(6)))
    statuses = sorted(r.status for r in burst)
    assert 200 in statuses and 429 in statuses, statuses
    assert statuses.count(200) <= 3, statuses  # the burst of 2, and maybe one refill
    limited = [r for r in burst if r.status == 429]
    for resp in limited:
        error = await error_of(resp, 429)
        assert error["code"] == "TooManyRequests" and "rate" in error["message"]
        assert int(resp.headers["Retry-After"]) >= 1
    # another key has a bucket of its own
    assert (await stack.client.get("/v1/functions")).status == 200
    await asyncio.sleep(max(int(r.headers["Retry-After"]) for r in limited))
    assert (await call(stack, "GET", "/v1/functions", key)).status == 200


SLEEPER = handler_zip("import time\ntime.sleep((event or {}).get('s', 0))\nreturn 'slept'")


async def test_namespace_concurrency_limit_is_per_namespace(hotpool_stack):
    stack = await hotpool_stack(namespace_max_concurrency=1)
    a = await stack.key("team-a")
    b = await stack.key("team-b")
    for key in (a, b):
        resp = await call(stack, "PUT", "/v1/functions/sleeper", key, body=SLEEPER)
        assert resp.status == 201, await resp.text()
        # warm, so the race below is about admission, not cold starts
        assert (await call(stack, "POST", "/v1/functions/sleeper/invoke", key)).status == 200

    async def invoke(key: str, after_s: float) -> aiohttp.ClientResponse:
        await asyncio.sleep(after_s)
        return await call(stack, "POST", "/v1/functions/sleeper/invoke", key, body=b'{"s": 1.0}')

    first, second, other = await asyncio.gather(invoke(a, 0), invoke(a, 0.3), invoke(b, 0.3))
    assert first.status == 200, await first.text()
    error = await error_of(second, 429)
    assert "team-a" in error["message"] and "limit" in error["message"]
    assert int(second.headers["Retry-After"]) >= 1
    assert other.status == 200, await other.text()  # team-b has a slot of its own
    # the slot is free again once the call is over
    assert (await call(stack, "POST", "/v1/functions/sleeper/invoke", a)).status == 200


# -- secrets in a function's environment -------------------------------------------------------


async def test_env_values_are_masked_in_responses_and_absent_from_logs(hotpool_stack, caplog):
    caplog.set_level(logging.DEBUG)
    stack = await hotpool_stack()
    code = handler_zip("import os\nreturn os.environ.get('API_TOKEN') == 's3cr3t'")
    # a query parameter, as the CLI sends it
    deployed = await stack.deploy("holder", code, env={"API_TOKEN": "s3cr3t"})
    assert deployed.status == 201
    texts = [await deployed.text()]
    assert (await deployed.json())["env"] == {"API_TOKEN": "***"}
    resp = await stack.invoke("holder", {})
    assert await resp.json() is True  # the function does get the value
    got = await stack.client.get("/v1/functions/holder")
    assert (await got.json())["env"] == {"API_TOKEN": "***"}
    listed = await stack.client.get("/v1/functions")
    texts += [await got.text(), await listed.text()]
    multipart = aiohttp.FormData()
    multipart.add_field("code", code, filename="f.zip", content_type="application/zip")
    multipart.add_field("env", orjson.dumps({"API_TOKEN": "s3cr3t"}).decode())
    resp = await stack.client.put("/v1/functions/holder", data=multipart)
    assert resp.status == 200, await resp.text()
    texts.append(await resp.text())
    assert await (await stack.invoke("holder", {})).json() is True
    records = await stack.client.get("/v1/functions/holder/invocations")
    texts.append(await records.text())
    for text in texts:
        assert "s3cr3t" not in text
    # hotpool's own loggers, at every level; everyone's at INFO, the level hotpool runs at
    # (main_server/serve.py). Left out: the test server's access log, which prints request
    # lines with their query (hotpool's servers run with access_log=None), and third-party
    # DEBUG output: aiosqlite echoes SQL parameters, env values included, at DEBUG.
    own = ("main_server", "manager", "shared")
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] in own
        or (r.levelno >= logging.INFO and not r.name.startswith("aiohttp.access"))
    ]
    assert logged, "expected Main and Manager to log something"
    assert not [m for m in logged if "s3cr3t" in m]
