"""Node code nobody here wrote in the Node.js runtime image (HOTPOOL_TEST_RUNTIME_IMAGE_NODEJS):
the Express app on serverless-http (its node_modules from npm) and the ES-module template."""

from __future__ import annotations

import json

import pytest

from tests.lambda_compat import node_apps
from tests.lambda_compat.harness import deploy, invoke, off_loop
from tests.services import RUNTIME_IMAGE_NODEJS
from tests.stack import require_docker

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack_backend() -> str:
    await require_docker(RUNTIME_IMAGE_NODEJS)
    return "docker"


async def test_an_express_app_in_the_nodejs_image(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(node_apps.express_app))
    resp = await stack.client.get("/fn/express/items/7?q=docker")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"id": "7", "q": "docker"}
    resp = await stack.client.post("/fn/express/echo", json={"in": "docker"})
    assert (resp.status, await resp.json()) == (201, {"got": {"in": "docker"}})


async def test_es_modules_with_a_callback_in_the_nodejs_image(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(node_apps.serverless_ecma_script))
    resp, body = await invoke(stack, "sls-esm", {"from": "docker"})
    assert resp.status == 200, body
    assert body["event"] == {"from": "docker"}
    assert json.dumps(body["message"]).endswith('First module!"')
