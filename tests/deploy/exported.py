"""The metric names hotpool exports, listed from the live registries of a running Main and
Manager (an embedded stack): what a scrape of each can show, never a list kept by hand."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.metrics_core import Metric

from hotpool.main_server import state
from hotpool.main_server.metrics import MainMetrics, MainSources
from hotpool.manager.app import METRICS as MANAGER_METRICS
from tests.deploy.promql import exposed_names
from tests.stack import Stack


async def exported_names(stack: Stack) -> set[str]:
    """Every series name Main's and the Manager's ``/metrics`` can show."""
    return exposed_names((family.name, family.type) for family in await exported_families(stack))


async def exported_families(stack: Stack) -> list[Metric]:
    """The metric families of both services' registries, their scrape-time state read as a
    scrape reads it."""
    main, manager = stack.client.app[state.METRICS], stack.manager_server.app[MANAGER_METRICS]
    if getattr(state, "SCHEDULER", None) is None:
        main = _with_a_scheduler(stack)
    families = []
    for metrics in (main, manager):
        await metrics.exporter.scrape()
        families.extend(metrics.registry.collect())
    return families


def _with_a_scheduler(stack: Stack) -> MainMetrics:
    """Until the scheduler (issue 16 part B) is part of Main, its app has no scheduler to
    report: a MainMetrics of its own, reading the same clients, is given a stand-in with the
    SchedulerStats fields. Once ``state.SCHEDULER`` exists this is never called."""
    app = stack.client.app
    stats = SimpleNamespace(leading=True, fencing_token=1, leader_changes=1, fires={}, missed={})
    metrics = MainMetrics(stack.settings.metrics_max_functions)
    metrics.watch(
        MainSources(
            redis=app[state.REDIS],
            metadata=app[state.METADATA],
            pool=app[state.POOL],
            registry=app[state.REGISTRY],
            queue=app[state.ASYNC_QUEUE],
            records=app[state.RECORDS],
            websockets=lambda: 0,
            scheduler=lambda: SimpleNamespace(stats=stats),
        )
    )
    return metrics
