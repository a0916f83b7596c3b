"""Layers end to end on both container backends: publish over the API, deploy a function
naming them, and call it through Main and a Manager."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hotpool.main_server.vendoring import build_package
from hotpool.manager.app import READER
from tests.helpers import make_zip

# vendored requirements are built once per content, across test runs
VENDOR_CACHE = Path.home() / ".cache" / "hotpool-tests" / "vendoring"

pytestmark = pytest.mark.integration


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


MAIN = """
import greet
import order

def handler(event, context):
    import shared  # the function's own module of that name, if it has one
    return {"greet": greet.WHO, "order": order.WHO, "shared": shared.WHO}
"""
FIRST = {
    "python/greet.py": "WHO = 'layer'\n",
    "python/order.py": "WHO = 'first'\n",
    "python/shared.py": "WHO = 'layer'\n",
}
# a layer built by pip install --target python/lib/python3.X/site-packages works the same
SECOND = {"python/order.py": "WHO = 'second'\n"}


async def publish(stack: Any, name: str, files: dict[str, str], **query: str) -> dict[str, Any]:
    resp = await stack.client.put(
        f"/v1/layers/{name}", data=make_zip(files), params=query,
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def call(stack: Any, name: str) -> Any:
    resp = await stack.invoke(name, {})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def deployed(stack: Any, name: str, files: dict[str, str], layers: str) -> dict[str, Any]:
    resp = await stack.deploy(name, make_zip(files), layers=layers)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def test_a_layer_provides_modules_and_the_later_layer_wins(hotpool_stack):
    stack = await hotpool_stack()
    first = await publish(stack, "first", FIRST, description="greetings")
    second = await publish(stack, "second", SECOND)
    assert (first["name"], first["version"], second["version"]) == ("first", 1, 1)
    assert first["description"] == "greetings" and first["size"] > 0

    fv = await deployed(stack, "echo", {"main.py": MAIN}, "first:1,second:1")

    assert fv["layers"] == ["first:1", "second:1"]
    assert await call(stack, "echo") == {"greet": "layer", "order": "second", "shared": "layer"}
    # the other order: the first layer's file is now the later one
    await deployed(stack, "echo", {"main.py": MAIN}, "second:1,first:1")
    assert (await call(stack, "echo"))["order"] == "first"


async def test_the_functions_own_module_wins_over_a_layers(hotpool_stack):
    stack = await hotpool_stack()
    await publish(stack, "first", FIRST)
    await publish(stack, "second", SECOND)

    code = {"main.py": MAIN, "shared.py": "WHO = 'code'\n"}
    await deployed(stack, "echo", code, "first:1,second:1")

    assert (await call(stack, "echo"))["shared"] == "code"


async def test_a_layers_site_packages_folder_is_on_the_path(hotpool_stack):
    stack = await hotpool_stack()
    # the runtime's own version: the image's python3 (Docker) or this one (process backend)
    probe = {"main.py": "import sys\ndef handler(e, c):\n    return sys.version_info[:2]\n"}
    await deployed(stack, "probe", probe, "")
    major, minor = await call(stack, "probe")
    site = f"python/lib/python{major}.{minor}/site-packages"
    await publish(stack, "deps", {f"{site}/vendored.py": "WHO = 'site'\n"})

    code = {"main.py": "import vendored\ndef handler(e, c):\n    return vendored.WHO\n"}
    await deployed(stack, "uses", code, "deps:1")

    assert await call(stack, "uses") == "site"


async def test_the_manager_fetches_a_layer_once_for_every_function_using_it(
    hotpool_stack, s3_endpoint, s3_bucket
):
    # packages in S3, as in production: the Manager reads them through its disk cache
    stack = await hotpool_stack(s3_bucket=s3_bucket, s3_endpoint_url=s3_endpoint)
    await publish(stack, "first", FIRST)
    await publish(stack, "second", SECOND)
    cache = stack.manager_server.app[READER]
    await deployed(stack, "one", {"main.py": MAIN}, "first:1,second:1")
    await call(stack, "one")
    assert cache.downloads == 3  # the code and both layers

    await deployed(stack, "two", {"main.py": MAIN + "\n# another package\n"}, "first:1,second:1")
    assert (await call(stack, "two"))["order"] == "second"

    assert cache.downloads == 4  # only two's code: the layers came from the node's cache


async def test_a_function_keeps_running_on_a_layer_version_deleted_after_its_deploy(
    hotpool_stack,
):
    stack = await hotpool_stack()
    await publish(stack, "first", FIRST)
    await publish(stack, "second", SECOND)
    await deployed(stack, "echo", {"main.py": MAIN}, "first:1,second:1")

    resp = await stack.client.delete("/v1/layers/first/versions/1")
    assert resp.status == 200, await resp.text()
    # a new container (none is warm yet) still finds the deleted version's package
    assert (await call(stack, "echo"))["greet"] == "layer"
    resp = await stack.deploy("other", make_zip({"main.py": MAIN}), layers="first:1")
    assert resp.status == 400 and "first:1" in (await resp.json())["error"]["message"]


VENDORED = """
import charset_normalizer.md
import requests
import six

def handler(event, context):
    return {
        "requests": requests.__version__,
        "six": six.__version__,
        # a compiled module of a manylinux wheel for CPython 3.11 loads in the runtime
        "compiled": charset_normalizer.md.__file__.endswith(".so"),
    }
"""


async def test_vendored_requirements_and_a_vendored_layer_run_in_the_runtime(
    hotpool_stack, tmp_path
):
    stack = await hotpool_stack()
    layer_dir, fn_dir = tmp_path / "six-layer", tmp_path / "fn"
    layer_dir.mkdir()
    (layer_dir / "requirements.txt").write_text("six==1.16.0\n")
    fn_dir.mkdir()
    (fn_dir / "requirements.txt").write_text("requests==2.32.3\n")
    (fn_dir / "main.py").write_text(VENDORED)
    # pip runs in a thread: it must not block the loop serving the stack
    layer = await asyncio.to_thread(
        build_package, layer_dir, cache_dir=VENDOR_CACHE, prefix="python"
    )
    code = await asyncio.to_thread(build_package, fn_dir, cache_dir=VENDOR_CACHE)
    resp = await stack.client.put(
        "/v1/layers/six", data=layer, headers={"Content-Type": "application/zip"}
    )
    assert resp.status == 201, await resp.text()

    resp = await stack.deploy("web", code, layers="six:1")
    assert resp.status == 201, await resp.text()

    assert await call(stack, "web") == {"requests": "2.32.3", "six": "1.16.0", "compiled": True}
