"""The Manager's API is only for Main: /v1/* wants the shared secret, /healthz stays open."""

from __future__ import annotations

import aiohttp
import fakeredis
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hotpool.main_server.app import create_app
from hotpool.manager.app import create_manager_app
from hotpool.shared.settings import Settings, SettingsError
from tests.helpers import handler_zip

ROUTES = [
    ("POST", "/v1/containers"),
    ("GET", "/v1/containers"),
    ("DELETE", "/v1/containers/p-000000000000"),
    ("GET", "/v1/nothing-here"),
]
WRONG = [
    None,
    "",
    "Bearer",
    "Bearer wrong-secret",
    "Bearer test-manager-secret-but-longer",
    "Bearer test-manager-secre",
    "bearer test-manager-secret ",
    "Basic test-manager-secret",
    "test-manager-secret",
]


async def _create_body(stack) -> dict:
    key = await stack.manager._code.put("b" * 64, handler_zip("return 1"))
    return {"function": "fn", "version": 1, "code_key": key, "handler": "main.handler",
            "memory_mb": 128, "timeout_s": 5, "env": {}}  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize("authorization", WRONG)
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_without_the_secret_every_v1_route_is_401(hotpool_stack, method, path, authorization):
    stack = await hotpool_stack()
    body = await _create_body(stack)
    headers = {} if authorization is None else {"Authorization": authorization}
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, f"{stack.settings.manager_url}{path}", json=body, headers=headers
        ) as resp:
            assert resp.status == 401, await resp.text()
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"]["code"] == "Unauthorized"
    assert stack.live_containers() == set()  # nothing was started


@pytest.mark.integration
async def test_with_the_secret_the_api_answers(hotpool_stack):
    stack = await hotpool_stack()
    url = stack.settings.manager_url
    async with aiohttp.ClientSession(headers=stack.manager_headers) as session:
        async with session.post(f"{url}/v1/containers", json=await _create_body(stack)) as resp:
            assert resp.status == 201, await resp.text()
            container_id = (await resp.json())["container_id"]
        async with session.get(f"{url}/v1/containers") as resp:
            assert resp.status == 200
            assert [c["container_id"] for c in (await resp.json())["containers"]] == [container_id]
        async with session.delete(f"{url}/v1/containers/{container_id}") as resp:
            assert resp.status == 200
        async with session.delete(f"{url}/v1/containers/{container_id}") as resp:
            assert resp.status == 404  # past the secret: the Manager's own answer
        async with session.get(f"{url}/v1/nothing-here") as resp:
            assert resp.status == 404
    assert stack.live_containers() == set()


@pytest.mark.integration
async def test_healthz_needs_no_secret(hotpool_stack):
    stack = await hotpool_stack()
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong-secret"}):
            async with session.get(
                f"{stack.settings.manager_url}/healthz", headers=headers
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ok"


@pytest.mark.integration
async def test_main_presents_the_secret_and_a_main_without_it_starts_nothing(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("fn", handler_zip("return 'hi'"))).status == 201
    assert (await stack.deploy("cold", handler_zip("return 'hi'"))).status == 201
    assert (await stack.invoke("fn", {})).status == 200  # Main sends the right secret
    started = stack.live_containers()
    # a Main configured with another secret, on the same Redis and database
    impostor = TestClient(
        TestServer(
            create_app(
                stack.settings.replace(manager_secret="not-the-secret"),
                redis=fakeredis.FakeAsyncRedis(server=stack.fake_server),
            )
        )
    )
    await impostor.start_server()
    try:
        key = await stack.key("default", "invoke")
        resp = await impostor.post(
            "/v1/functions/cold/invoke", json={}, headers={"Authorization": f"Bearer {key}"}
        )
        assert resp.status == 502, await resp.text()
        assert "401" in (await resp.json())["error"]["message"]
        assert "X-Hotpool-Function-Error" not in resp.headers
    finally:
        await impostor.close()
    assert stack.live_containers() == started


@pytest.mark.unit
@pytest.mark.parametrize("secret", [None, ""])
def test_a_manager_without_a_secret_refuses_to_start(tmp_path, secret):
    overrides = {} if secret is None else {"manager_secret": secret}
    settings = Settings.from_env({}, state_dir=tmp_path, **overrides)
    with pytest.raises(SettingsError, match="HOTPOOL_MANAGER_SECRET"):
        create_manager_app(settings)
    # from the environment, as `hotpool manager` reads it
    settings = Settings.from_env(
        {"HOTPOOL_MANAGER_SECRET": "s", "HOTPOOL_STATE_DIR": str(tmp_path)}
    )
    assert create_manager_app(settings) is not None
