"""A Manager's /metrics (manager.metrics, on its own port) and /readyz."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession, web
from prometheus_client.parser import text_string_to_metric_families

from hotpool.manager.app import BACKEND, METRICS
from hotpool.shared.metrics import metrics_app
from tests.helpers import free_port, handler_zip

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _cold_start(stack) -> None:
    key = await stack.manager._code.put("a" * 64, handler_zip("return 1"))
    body = {"function": "fn", "version": 1, "code_key": key, "handler": "main.handler",
            "memory_mb": 128, "timeout_s": 5, "env": {}}  # fmt: skip
    async with stack.client.session.post(
        f"{stack.settings.manager_url}/v1/containers", json=body, headers=stack.manager_headers
    ) as resp:
        assert resp.status == 201, await resp.text()


async def test_the_metrics_port_shows_the_managers_containers_and_starts(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=7)
    runner = web.AppRunner(metrics_app(stack.manager_server.app[METRICS].exporter))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await _cold_start(stack)
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            found = samples(await resp.text())
    finally:
        await runner.cleanup()

    by_state = "hotpool_manager_containers_by_state"
    assert found[(by_state, (("state", "ready"),))] == 1
    assert found[(by_state, (("state", "starting"),))] == 0
    assert found[("hotpool_manager_capacity", (("resource", "containers"),))] == 7
    assert found[("hotpool_manager_capacity", (("resource", "memory_mb"),))] > 0
    starts = (
        "hotpool_manager_container_starts_total",
        (("prewarmed", "false"), ("runtime", "python")),
    )
    assert found[starts] == 1
    for phase in ("code_fetch", "container_start", "init", "total"):
        assert found[("hotpool_manager_container_start_seconds_count", (("phase", phase),))] == 1
    assert 0 <= found[("hotpool_manager_heartbeat_age_seconds", ())] < 60
    assert found[("hotpool_manager_backend_up", ())] == 1


async def _readyz(stack) -> tuple[int, dict]:
    async with ClientSession() as anonymous:  # open, like /healthz: no secret
        async with anonymous.get(f"{stack.settings.manager_url}/readyz") as resp:
            return resp.status, await resp.json()


async def test_readyz_is_ready_while_the_backend_answers_and_it_takes_cold_starts(hotpool_stack):
    stack = await hotpool_stack()
    status, body = await _readyz(stack)
    assert status == 200
    assert body == {
        "ready": True,
        "checks": {"backend": "ok", "registered": "ok", "accepting": "ok"},
    }


async def test_readyz_is_503_while_the_backend_does_not_answer(hotpool_stack, monkeypatch):
    stack = await hotpool_stack()
    backend = stack.manager_server.app[BACKEND]

    async def daemon_gone() -> bool:  # what DockerBackend.healthy says when the ping fails
        return False

    monkeypatch.setattr(backend, "healthy", daemon_gone)
    status, body = await _readyz(stack)
    assert status == 503 and body["ready"] is False
    assert body["checks"]["backend"].startswith("unreachable")
    assert body["checks"]["accepting"] == "ok"


async def test_readyz_is_503_while_draining_or_unregistered(hotpool_stack):
    stack = await hotpool_stack()
    stack.manager.accepting = False
    status, body = await _readyz(stack)
    assert status == 503 and body["checks"]["accepting"] == "draining"
    stack.manager.accepting = True
    stack.manager.heartbeat_ok_at = 0.0  # no heartbeat reached Redis
    status, body = await _readyz(stack)
    assert status == 503 and body["checks"]["registered"].startswith("no heartbeat")
