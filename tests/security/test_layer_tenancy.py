"""Layers are a tenant's own: another tenant's layer is a 404 on every route and cannot be
named in a deploy; hostile zips, bad names and too many layers are 4xx that change nothing."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.helpers import handler_zip, make_zip
from tests.shared.test_packages import symlink_zip, zeros_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

LAYER = make_zip({"python/deps.py": "WHO = 'a'\n"})
CODE = handler_zip("return 1")
MIB = 1024 * 1024


async def call(
    stack: Stack, method: str, path: str, key: str, body: bytes | None = None, **params: str
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/zip"}
    return await stack.client.request(method, path, headers=headers, params=params, data=body)


async def status_of(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return resp.status, await resp.json()


@pytest.fixture
async def tenants(hotpool_stack) -> tuple[Stack, str, str]:
    """team-a has published deps:1; team-b has nothing."""
    stack = await hotpool_stack()
    a, b = await stack.key("team-a"), await stack.key("team-b")
    resp = await call(stack, "PUT", "/v1/layers/deps", a, LAYER)
    assert resp.status == 201, await resp.text()
    return stack, a, b


def packages(stack: Stack) -> set[str]:
    return {p.name for p in stack.settings.code_dir.rglob("*.zip")}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/layers/deps"),
        ("GET", "/v1/layers/deps/versions/1"),
        ("DELETE", "/v1/layers/deps/versions/1"),
        ("GET", "/v1/layers"),
        ("PUT", "/v1/layers/deps"),
    ],
)
async def test_another_tenants_layer_is_404_on_every_route(tenants, method, path):
    stack, a, b = tenants
    body = LAYER if method == "PUT" else None

    resp = await call(stack, method, path, b, body, namespace="team-a")
    status, body_json = await status_of(resp)

    assert status == 404, body_json
    # and it is still there, unchanged, for its owner
    status, found = await status_of(await call(stack, "GET", "/v1/layers/deps", a))
    assert status == 200 and [v["version"] for v in found["versions"]] == [1]


async def test_another_tenants_layer_does_not_exist_in_ones_own_namespace(tenants):
    stack, _, b = tenants

    for path in ("/v1/layers/deps", "/v1/layers/deps/versions/1"):
        assert (await call(stack, "GET", path, b)).status == 404
    assert (await call(stack, "DELETE", "/v1/layers/deps/versions/1", b)).status == 404
    status, listed = await status_of(await call(stack, "GET", "/v1/layers", b))
    assert status == 200 and listed == {"layers": []}


async def test_a_deploy_cannot_name_another_tenants_layer(tenants):
    stack, _, b = tenants

    resp = await call(stack, "PUT", "/v1/functions/fn", b, CODE, layers="deps:1")

    status, body = await status_of(resp)
    assert status == 400 and "layer 'deps:1' does not exist" in body["error"]["message"]
    assert (await call(stack, "GET", "/v1/functions/fn", b)).status == 404


async def test_scopes_hold_for_layers(tenants):
    stack, a, _ = tenants
    reader = await stack.key("team-a", scopes="read")
    invoker = await stack.key("team-a", function="fn")

    assert (await call(stack, "GET", "/v1/layers/deps", reader)).status == 200
    assert (await call(stack, "PUT", "/v1/layers/deps", reader, LAYER)).status == 403
    assert (await call(stack, "DELETE", "/v1/layers/deps/versions/1", reader)).status == 403
    # a key for one function sees no layers at all
    assert (await call(stack, "GET", "/v1/layers/deps", invoker)).status == 404
    assert (await call(stack, "GET", "/v1/layers", invoker)).status == 404
    _, found = await status_of(await call(stack, "GET", "/v1/layers/deps", a))
    assert [v["version"] for v in found["versions"]] == [1]


HOSTILE = {
    "escaping path": make_zip({"../escape.py": "x"}),
    "absolute path": make_zip({"/etc/escape.py": "x"}),
    "symlink": symlink_zip(),
    "zip bomb": zeros_zip("python/bomb.bin", 300 * MIB, zip64=True),
    "not a zip": b"PK\x03\x04 but not really",
    "empty": b"",
}


@pytest.mark.parametrize("label", list(HOSTILE))
async def test_a_hostile_layer_zip_is_refused_and_stores_nothing(tenants, label):
    stack, a, _ = tenants
    before = packages(stack)

    status, body = await status_of(await call(stack, "PUT", "/v1/layers/evil", a, HOSTILE[label]))

    assert status in (400, 413), body
    assert body["error"]["message"]
    assert (await call(stack, "GET", "/v1/layers/evil", a)).status == 404
    assert packages(stack) == before


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/v1/layers/Bad.Name", {}, "invalid layer name"),
        ("/v1/layers/deps", {"publish": "yes"}, "unknown parameter"),
        ("/v1/layers/deps", {"description": "a\nb"}, "description"),
        ("/v1/layers/deps", {"description": "x" * 256}, "description"),
    ],
)
async def test_bad_publish_input_is_a_400_naming_it(tenants, path, params, needle):
    stack, a, _ = tenants

    status, body = await status_of(await call(stack, "PUT", path, a, LAYER, **params))

    assert status == 400 and needle in body["error"]["message"], body
    status, found = await status_of(await call(stack, "GET", "/v1/layers/deps", a))
    assert [v["version"] for v in found["versions"]] == [1]


@pytest.mark.parametrize("version", ["0", "x", "-1", "1000000000", "01a"])
async def test_a_bad_version_in_the_path_is_a_400(tenants, version):
    stack, a, _ = tenants

    resp = await call(stack, "DELETE", f"/v1/layers/deps/versions/{version}", a)

    assert resp.status == 400, await resp.text()
    assert (await call(stack, "GET", "/v1/layers/deps/versions/1", a)).status == 200


async def test_more_than_five_layers_are_refused(tenants):
    stack, a, _ = tenants
    for _ in range(5):
        assert (await call(stack, "PUT", "/v1/layers/deps", a, LAYER)).status == 201
    for name in ("l1", "l2", "l3", "l4", "l5", "l6"):
        assert (await call(stack, "PUT", f"/v1/layers/{name}", a, LAYER)).status == 201
    six = ",".join(f"l{n}:1" for n in range(1, 7))

    resp = await call(stack, "PUT", "/v1/functions/fn", a, CODE, layers=six)
    status, body = await status_of(resp)

    assert status == 400 and "at most 5 layers" in body["error"]["message"]
    assert (await call(stack, "GET", "/v1/functions/fn", a)).status == 404
    five = ",".join(f"l{n}:1" for n in range(1, 6))
    assert (await call(stack, "PUT", "/v1/functions/fn", a, CODE, layers=five)).status == 201
