"""The metric names hotpool exports, listed from the live registries of a running Main and
Manager (an embedded stack): what a scrape of each can show, never a list kept by hand."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric

from hotpool.main_server import state
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
    families = []
    for metrics in (main, manager):
        await metrics.exporter.scrape()
        families.extend(metrics.registry.collect())
    return families
