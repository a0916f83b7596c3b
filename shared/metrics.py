"""Prometheus plumbing shared by Main and the Manager (prometheus_client).

Each application owns a ``CollectorRegistry`` of its own, never the library's global one: a
test process builds many apps, and two of them must not count into one series. Figures read
from Redis or the service's state (containers, queues, leaders) are not kept as gauges that
something must remember to update: a ``StateCollector`` builds them at scrape time from the
last snapshot its service read (https://prometheus.github.io/client_python/collector/custom/).

``/metrics`` listens on its own port (``metrics_app``, started by ``main_server.serve``), as a
Spring Boot actuator does: the port can be kept to the private network while the API port is
public, and the API's key checks and connection limits never stand between Prometheus and its
target.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

OTHER = "other"
# a scrape's reads of Redis and the metadata store: a store that does not answer costs a scrape
# this long, then shows as down (Prometheus's own scrape timeout defaults to 10 s)
state_read_timeout_s = 2.0

# bucket bounds in seconds: an invocation (1 ms .. a minute), Main's overhead on top of the
# handler (50 µs .. 1 s), and the phases of a cold start
DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
OVERHEAD_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
)  # fmt: skip
PHASE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class LabelFolder:
    """Bounds the label values one tenant can create: the first ``max_values`` distinct
    (namespace, function) pairs keep their names, later ones share the function "other" (and
    the namespace "other" too, unless the namespace already has a kept function). A process
    thus exports at most ``2 * max_values + 1`` pairs, whatever is deployed."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._kept: set[tuple[str, str]] = set()
        self._namespaces: set[str] = set()

    def fold(self, namespace: str, function: str) -> tuple[str, str]:
        pair = (namespace, function)
        if pair in self._kept:
            return pair
        if len(self._kept) < self.max_values:
            self._kept.add(pair)
            self._namespaces.add(namespace)
            return pair
        return (self.namespace(namespace), OTHER)

    def namespace(self, namespace: str) -> str:
        """A namespace label on its own (queue depths): kept if one of its functions is."""
        if namespace in self._namespaces:
            return namespace
        if len(self._kept) < self.max_values:
            self._namespaces.add(namespace)
            return namespace
        return OTHER


def known(value: str, allowed: frozenset[str], otherwise: str = OTHER) -> str:
    """``value`` when it is one of ``allowed``, else ``otherwise``: a label whose values come
    from outside (a container's reply) must not mint new series."""
    return value if value in allowed else otherwise


class StateCollector(Collector):
    """A collector whose families ``build`` makes at scrape time, from state read before."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self._build = build

    def collect(self) -> Iterator[Metric]:
        yield from self._build()

    def describe(self) -> list[Metric]:
        # nothing to check for collisions up front, and collect() must not run at register()
        return []


class Exporter:
    """A registry and the async read of state that precedes each scrape."""

    def __init__(self, registry: CollectorRegistry, refresh: Callable[[], Awaitable[None]]):
        self.registry = registry
        self._refresh = refresh

    async def scrape(self) -> bytes:
        """The exposition text of everything registered, state read fresh."""
        try:
            await self._refresh()
        except Exception:  # a scrape still answers with what it has
            log.exception("reading state for /metrics failed")
        return generate_latest(self.registry)


async def probe(check: Awaitable[object], timeout_s: float | None = None) -> str | None:
    """Run ``check`` for at most ``timeout_s`` (default ``state_read_timeout_s``); None when
    it succeeded, else why not in a few words: the kind of error only, as /readyz is open to
    anyone and a driver's message names hosts and ports."""
    timeout_s = state_read_timeout_s if timeout_s is None else timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            await check
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except Exception as exc:
        log.debug("probe failed", exc_info=True)
        return f"unreachable ({type(exc).__name__})"
    return None


def metrics_app(exporter: Exporter) -> web.Application:
    """The application serving ``GET /metrics`` on the metrics port."""

    async def metrics(request: web.Request) -> web.Response:
        body = await exporter.scrape()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
