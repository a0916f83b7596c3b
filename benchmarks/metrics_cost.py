"""What Prometheus metrics cost the invoke path: ``MainMetrics.observe`` (one call per
invocation, from its execution record) timed in this process over realistic records, so no
other process's noise enters the figure. Main's CPU per invocation with /metrics on and off
is measured with the other memory and CPU figures (``benchmarks.memory``)."""

from __future__ import annotations

import itertools
import timeit
from typing import Any

from hotpool.main_server.metrics import MainMetrics

# a cluster's mix: 40 functions in 4 namespaces, mostly warm successes, a few errors and
# cold starts, every trigger
FUNCTIONS = [f"team{i % 4}.fn{i}" for i in range(40)]
TRIGGERS = ("sync", "sync", "sync", "web", "async", "websocket")
BREAKDOWN = {
    "placement_ms": 0.4,
    "code_fetch_ms": 1.2,
    "container_start_ms": 0.0,
    "init_ms": 14.0,
    "manager_total_ms": 16.1,
    "prewarmed": True,
}


def records(n: int) -> list[dict[str, Any]]:
    """``n`` execution records as the invoke path writes them (the fields metrics read)."""
    out = []
    for i, (function, trigger) in enumerate(
        zip(itertools.cycle(FUNCTIONS), itertools.cycle(TRIGGERS))
    ):
        if i == n:
            break
        cold = i % 100 == 0
        record: dict[str, Any] = {
            "request_id": f"r{i}",
            "function": function,
            "version": 1,
            "trigger": trigger,
            "status": "error" if i % 50 == 7 else "success",
            "cold_start": cold,
            "cold_start_breakdown": BREAKDOWN if cold else None,
            "duration_ms": 1.234 + (i % 7),
            "handler_ms": 0.456 + (i % 5),
        }
        out.append(record)
    return out


def measure(n: int = 20_000) -> dict[str, Any]:
    """µs per invocation of the metrics call (the best of three runs over ``n`` records; the
    first run's cache misses, where labelled children are made, come before the timing)."""
    metrics = MainMetrics(max_functions=200)
    sample = records(n)
    observe = metrics.observe

    def run() -> None:
        for record in sample:
            observe(record)

    run()  # every label tuple seen once: what a long-running Main is in
    best_s = min(timeit.repeat(run, number=1, repeat=3))
    warm = [r for r in sample if not r["cold_start"]][: n // 2]
    warm_s = min(timeit.repeat(lambda: [observe(r) for r in warm], number=1, repeat=3))
    return {
        "us_per_invocation": round(best_s / n * 1e6, 2),
        "us_per_warm_invocation": round(warm_s / len(warm) * 1e6, 2),
        "records": n,
        "functions": len(FUNCTIONS),
    }
