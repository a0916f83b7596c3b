"""Every metric name Main's and a Manager's /metrics can show, read from live registries (for
tests that check that dashboards and alert rules name only real metrics).

Main's registry is scraped with its state sources on fakeredis and a scheduler stand-in, so
the scrape-time families are there too; the Manager's with a service stand-in. A family with
no sample yet still names its type, from which its sample names follow (a counter's
``_total``, a histogram's ``_bucket``, ``_sum`` and ``_count``).
"""

from __future__ import annotations

from types import SimpleNamespace

import fakeredis
from prometheus_client.parser import text_string_to_metric_families

from hotpool.main_server.metrics import MainMetrics, MainSources
from hotpool.main_server.scheduler import SchedulerStats
from hotpool.manager.metrics import ManagerMetrics
from hotpool.shared.async_queue import AsyncQueue
from hotpool.shared.pool import Pool
from hotpool.shared.registry import ManagerRegistry
from hotpool.shared.settings import Settings

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def sample_names(text: str) -> set[str]:
    """The sample names an exposition text's families have, or will have once counted."""
    names = set()
    for family in text_string_to_metric_families(text):
        if family.samples:
            names.update(sample.name for sample in family.samples)
        else:
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


async def main_names() -> set[str]:
    redis = fakeredis.FakeAsyncRedis()
    metrics = MainMetrics(200)
    stats = SchedulerStats(leading=True, fencing_token=1, leader_changes=1)
    records = SimpleNamespace(queued=0, spilled=0, replayed=0)
    metadata = SimpleNamespace(ping=_nothing)
    metrics.watch(
        MainSources(
            redis=redis, metadata=metadata, pool=Pool(redis),  # type: ignore[arg-type]
            registry=ManagerRegistry(redis), queue=AsyncQueue(redis),
            records=records, websockets=lambda: 0,  # type: ignore[arg-type]
            scheduler=lambda: stats,
        )
    )  # fmt: skip
    try:
        return sample_names((await metrics.exporter.scrape()).decode())
    finally:
        await redis.aclose()


async def manager_names() -> set[str]:
    metrics = ManagerMetrics()
    service = SimpleNamespace(containers=[], settings=Settings(capacity_memory_mb=1024),
                              heartbeat_ok_at=1.0, healthy=True)  # fmt: skip
    metrics.watch(service)  # type: ignore[arg-type]
    return sample_names((await metrics.exporter.scrape()).decode())


async def exported_names() -> set[str]:
    """Every sample name either service exports."""
    return await main_names() | await manager_names()


async def _nothing() -> None:
    pass
