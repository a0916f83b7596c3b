"""The Prometheus plumbing Main and the Manager share: label folding, bounded probes, the
exposition served on the metrics port."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from hotpool.shared.metrics import (
    OTHER,
    Exporter,
    LabelFolder,
    StateCollector,
    known,
    metrics_app,
    probe,
)


@pytest.mark.unit
def test_the_first_pairs_keep_their_names_and_later_ones_fold():
    folder = LabelFolder(3)
    assert folder.fold("a", "f1") == ("a", "f1")
    assert folder.fold("a", "f2") == ("a", "f2")
    assert folder.fold("b", "f1") == ("b", "f1")
    # full: a kept namespace keeps its name, a new one folds too
    assert folder.fold("a", "f3") == ("a", OTHER)
    assert folder.fold("c", "f1") == (OTHER, OTHER)
    # what was kept stays kept, whatever came since
    assert folder.fold("a", "f1") == ("a", "f1")
    assert folder.namespace("b") == "b" and folder.namespace("c") == OTHER


@pytest.mark.unit
def test_folding_bounds_the_pairs_whatever_is_deployed():
    folder = LabelFolder(10)
    pairs = {folder.fold(f"ns{i % 300}", f"fn{i}") for i in range(5000)}
    assert len(pairs) <= 2 * 10 + 1


@pytest.mark.unit
def test_a_label_from_outside_takes_only_known_values():
    allowed = frozenset({"success", "error"})
    assert known("success", allowed) == "success"
    assert known("x" * 10_000, allowed) == OTHER
    assert known("weird", allowed, "error") == "error"


@pytest.mark.unit
async def test_a_probe_names_the_kind_of_failure_and_never_waits_past_its_timeout():
    async def fine() -> None:
        return None

    async def refused() -> None:
        raise ConnectionRefusedError("connect to 10.1.2.3:6379 refused, password=hunter2")

    async def silent() -> None:
        await asyncio.Event().wait()

    assert await probe(fine()) is None
    why = await probe(refused())
    assert why == "unreachable (ConnectionRefusedError)"  # no host, port or secret
    assert await probe(silent(), timeout_s=0.05) == "no answer within 0.05 s"


@pytest.mark.unit
async def test_the_state_is_read_before_each_scrape_and_served_as_prometheus_text():
    registry = CollectorRegistry(auto_describe=False)
    Counter("things", "Things", ["kind"], registry=registry).labels("a").inc(3)
    reads = []

    async def refresh() -> None:
        reads.append(len(reads) + 1)

    registry.register(
        StateCollector(lambda: [GaugeMetricFamily("reads", "Reads", value=reads[-1])])
    )
    client = TestClient(TestServer(metrics_app(Exporter(registry, refresh))))
    await client.start_server()
    try:
        for expected in (1, 2):
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
            assert families["reads"].samples[0].value == expected
            assert families["things"].samples[0].labels == {"kind": "a"}
            assert families["things"].samples[0].value == 3
    finally:
        await client.close()


@pytest.mark.unit
async def test_a_failed_read_still_answers_with_what_there_is(caplog):
    registry = CollectorRegistry(auto_describe=False)
    Counter("things", "Things", registry=registry).inc()

    async def refresh() -> None:
        raise RuntimeError("boom")

    text = (await Exporter(registry, refresh).scrape()).decode()
    assert "things_total 1.0" in text
    assert "reading state for /metrics failed" in caplog.text
