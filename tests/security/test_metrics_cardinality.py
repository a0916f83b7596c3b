"""/metrics against a hostile tenant: deploying ever more functions (or a container replying
with made-up statuses) must not grow Prometheus's series without bound — a tenant who can do
that can exhaust the memory of Main and of the Prometheus server — and nothing a scrape shows
may be a secret: API keys, the Manager's secret, containers' secrets, function environment
values, event bodies."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

from hotpool.main_server.metrics import MainMetrics
from hotpool.main_server.state import METRICS
from hotpool.manager.app import METRICS as MANAGER_METRICS
from tests.helpers import handler_zip

FOLD = 5
BY_FUNCTION = (
    "hotpool_invocations_total",
    "hotpool_invocation_duration_seconds_count",
    "hotpool_handler_duration_seconds_count",
    "hotpool_cold_starts_total",
)


def pairs(text: str, name: str) -> set[tuple[str, str]]:
    return {
        (s.labels["namespace"], s.labels["function"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


@pytest.mark.unit
async def test_a_thousand_functions_stay_within_the_fold():
    metrics = MainMetrics(FOLD)
    for i in range(1000):
        metrics.observe({"function": f"evil.fn{i}", "trigger": "sync", "status": "success",
                         "cold_start": i % 2 == 0, "duration_ms": 1.0, "handler_ms": 0.5,
                         "cold_start_breakdown": {"init_ms": 1.0}})  # fmt: skip
        metrics.refused({"function": f"evil{i}.fn", "trigger": "web"})
    text = (await metrics.exporter.scrape()).decode()
    for name in BY_FUNCTION:
        found = pairs(text, name)
        assert len(found) <= 2 * FOLD + 1, (name, len(found))
        assert ("evil", "other") in found
    assert ("other", "other") in pairs(text, "hotpool_invocations_total")
    series = sum(len(f.samples) for f in text_string_to_metric_families(text))
    assert series < 1000  # 2,000 distinct names went in


@pytest.mark.integration
async def test_a_tenant_deploying_many_functions_cannot_grow_the_series(hotpool_stack):
    stack = await hotpool_stack(metrics_max_functions=FOLD)
    key = await stack.key("evil")
    headers = {"Authorization": f"Bearer {key}"}
    for i in range(FOLD + 7):
        resp = await stack.client.put(
            f"/v1/functions/fn{i}", data=handler_zip("return 1"),
            headers={**headers, "Content-Type": "application/zip"},
        )  # fmt: skip
        assert resp.status == 201, await resp.text()
        resp = await stack.client.post(f"/v1/functions/fn{i}/invoke", json={}, headers=headers)
        assert resp.status == 200
    text = (await stack.client.app[METRICS].exporter.scrape()).decode()

    for name in ("hotpool_invocations_total", "hotpool_containers"):
        found = pairs(text, name)
        assert len(found) <= FOLD + 1, (name, found)
        assert ("evil", "other") in found


@pytest.mark.integration
async def test_nothing_secret_is_in_either_scrape(hotpool_stack):
    stack = await hotpool_stack()
    env = {"API_TOKEN": "env-value-4f1c9e"}
    resp = await stack.deploy("leaky", handler_zip("return event"), env=env)
    assert resp.status == 201, await resp.text()
    event = {"card": "event-body-7d2a11"}
    assert (await stack.invoke("leaky", event)).status == 200
    assert (await stack.client.get("/fn/leaky/path-5e0b?q=query-8c3f")).status == 200
    async with ClientSession() as anonymous:  # a request with a wrong key, counted or not
        await anonymous.get(stack.client.make_url("/v1/functions"),
                            headers={"Authorization": "Bearer hp_0000_wrong-key-b71e"})  # fmt: skip

    main = (await stack.client.app[METRICS].exporter.scrape()).decode()
    manager = (await stack.manager_server.app[MANAGER_METRICS].exporter.scrape()).decode()
    entries = await stack.pool_entries("leaky", 1)
    container_secret = entries[0].rsplit("|", 1)[1]
    admin_key = stack.client.session.headers["Authorization"].removeprefix("Bearer ")
    secrets = {
        "an API key": admin_key,
        "the Manager's secret": stack.settings.manager_secret,
        "a container's secret": container_secret,
        "an environment value": env["API_TOKEN"],
        "an event body": "event-body-7d2a11",
        "a web path": "path-5e0b",
        "a query": "query-8c3f",
        "a rejected key": "wrong-key-b71e",
    }
    assert "leaky" in main  # the scrape did count the function
    for what, secret in secrets.items():
        assert secret not in main, f"Main's /metrics shows {what}"
        assert secret not in manager, f"the Manager's /metrics shows {what}"
    assert orjson.dumps(event).decode() not in main


@pytest.mark.unit
async def test_a_container_lying_about_its_handler_time_spoils_no_histogram():
    metrics = MainMetrics(FOLD)
    base = {"function": "liar", "trigger": "sync", "status": "success", "cold_start": False}
    for claimed in ("abc", float("nan"), float("inf"), -5.0, 10**30, None, 4.0):
        metrics.observe({**base, "duration_ms": 5.0, "handler_ms": claimed})
    text = (await metrics.exporter.scrape()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    handler = {s.name: s.value for s in families["hotpool_handler_duration_seconds"].samples}
    assert handler["hotpool_handler_duration_seconds_count"] == 1  # only the believable 4 ms
    assert handler["hotpool_handler_duration_seconds_sum"] == pytest.approx(0.004)
    invocations = families["hotpool_invocations"].samples
    assert sum(s.value for s in invocations if s.name == "hotpool_invocations_total") == 7
