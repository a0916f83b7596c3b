"""Which images a tenant may run as a function (``image=...``): only repositories the operator
allows (HOTPOOL_IMAGE_ALLOW, ``{namespace}`` for the tenant's own), never hotpool's own
runtime images, never a pin the deployer chose. Each refusal is a 4xx that deploys nothing.
These checks come before any Manager is asked, so they run on the process backend."""

from __future__ import annotations

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


async def deploy(stack: Stack, key: str, name: str, **params: str):
    headers = {"Authorization": f"Bearer {key}"}
    return await stack.client.put(f"/v1/functions/{name}", params=params, headers=headers)


async def nothing_deployed(stack: Stack, name: str, namespace: str) -> bool:
    resp = await stack.client.get(f"/v1/functions/{name}", params={"namespace": namespace})
    return resp.status == 404


async def test_image_functions_are_off_unless_the_operator_allows_images(hotpool_stack):
    stack = await hotpool_stack()
    key = await stack.key("team-a")
    resp = await deploy(stack, key, "fn", image="registry.local/team-a/fn:1")
    assert resp.status == 403
    assert "HOTPOOL_IMAGE_ALLOW" in (await resp.json())["error"]["message"]
    assert await nothing_deployed(stack, "fn", "team-a")


@pytest.mark.parametrize(
    "image",
    [
        "hotpool/runtime-python:latest",
        "hotpool/runtime-provided:latest",
        "hotpool/base-debian:bookworm",
    ],
)
async def test_hotpool_images_are_never_functions_even_when_allowed(hotpool_stack, image):
    stack = await hotpool_stack(image_allow="hotpool/,registry.local/")
    key = await stack.key("team-a")
    resp = await deploy(stack, key, "fn", image=image)
    assert resp.status == 403
    assert "hotpool's own images" in (await resp.json())["error"]["message"]
    assert await nothing_deployed(stack, "fn", "team-a")


async def test_a_tenant_names_only_its_own_repositories(hotpool_stack):
    stack = await hotpool_stack(image_allow="registry.local/{namespace}/")
    a, b = await stack.key("team-a"), await stack.key("team-b")
    stolen = await deploy(stack, b, "fn", image="registry.local/team-a/fn:1")
    assert stolen.status == 403
    assert "registry.local/team-b/" in (await stolen.json())["error"]["message"]
    # a host image outside every allowed prefix
    host = await deploy(stack, a, "fn", image="debian:bookworm")
    assert host.status == 403
    # its own passes the allow-list; this stack's process backend then cannot run images
    own = await deploy(stack, a, "fn", image="registry.local/team-a/fn:1")
    assert own.status == 400
    assert "Docker backend" in (await own.json())["error"]["message"]
    for namespace in ("team-a", "team-b"):
        assert await nothing_deployed(stack, "fn", namespace)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        # the pin is hotpool's: a deployer naming an image ID would bypass the allow-list
        ({"image": "registry.local/team-a/fn:1", "image_id": "sha256:" + "a" * 64}, "image_id"),
        ({"image": "registry.local/team-a/fn:1", "handler": "app.handler"}, "no handler"),
        ({"image": "registry.local/team-a/fn:1", "runtime": "python"}, "no runtime"),
        ({"image": "registry.local/team-a/fn:1", "layers": "deps:1"}, "no layers"),
        ({"image": "Registry.local/team-a/FN"}, "not an image reference"),
        ({"image": "registry.local/team-a/fn:1", "image_command": '"app.handler"'}, "JSON list"),
        ({"image": "registry.local/team-a/fn:1", "image_workdir": "task"}, "absolute"),
        ({"image_command": '["app.handler"]'}, "need image"),
    ],
)
async def test_malformed_image_settings_are_400(hotpool_stack, params, fragment):
    stack = await hotpool_stack(image_allow="registry.local/{namespace}/")
    key = await stack.key("team-a")
    resp = await deploy(stack, key, "fn", **params)
    assert resp.status == 400
    assert fragment in (await resp.json())["error"]["message"]
    assert await nothing_deployed(stack, "fn", "team-a")
