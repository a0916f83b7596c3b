"""Warm latency and throughput, through Main and straight to the containers, side by side.

Each figure comes from runs of the two paths in alternation (Main, direct, direct, Main, ...)
within one benchmark run, so a noisy machine slows both alike and their ratio holds; a
figure is the median over the rounds. "Direct" gives each connection a container of its own
(a container serves one call at a time), "through Main" sends every connection to Main,
which leases the containers from the pool.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from hotpool.benchmarks.devserver import BENCH_EVENT, HOLD_EVENT, DevServer, process_stats
from hotpool.benchmarks.loadgen import LoadDistorted, LoadResult, Target, run_load
from hotpool.main_server import web_http_api, web_rest_api
from hotpool.main_server.web_request import WebRequest
from hotpool.shared.models import CONTAINER_SECRET_HEADER, PoolEntry

FIGURES = ("rps", "p50_ms", "p95_ms", "p99_ms", "mean_ms")
HOLD_S = 0.5  # longer than a warm-up call holds its container (HOLD_EVENT)
max_error_share = 0.01  # a side with more failed requests than this is not a measurement


def main_target(server: DevServer, function: str) -> Target:
    return Target(
        f"{server.main_url}/v1/functions/{function}/invoke",
        BENCH_EVENT,
        (("Authorization", f"Bearer {server.api_key}"),),
    )


def web_target(server: DevServer, function: str) -> Target:
    """The same call through the web route (``/fn/{function}/``), as a function URL client."""
    return Target(
        f"{server.main_url}/fn/{function}/",
        BENCH_EVENT,
        (("Authorization", f"Bearer {server.api_key}"),),
    )


def direct_target(entry: PoolEntry) -> Target:
    """A call straight to one container, with the secret its bootstrap demands, as Main sends."""
    secret = ((CONTAINER_SECRET_HEADER, entry.secret),)
    return Target(f"http://{entry.address}/invoke", BENCH_EVENT, secret)


def entries(server: DevServer, function: str) -> list[PoolEntry]:
    """The function's containers, as the pool names them, by address."""
    found = [PoolEntry.decode(c["entry"]) for c in server.containers_of(function)]
    return sorted(found, key=lambda entry: entry.address)


def addresses(server: DevServer, function: str) -> list[str]:
    return [entry.address for entry in entries(server, function)]


def warm_up(server: DevServer, function: str, concurrency: int, tool: str, timeout_s: float) -> int:
    """Start containers until the function has ``concurrency`` of them (or time is up): calls
    that hold their container for a moment, from ``concurrency`` connections at once, make
    the pool start one container per connection. Returns how many it has."""
    target = main_target(server, function)
    holding = Target(target.url, HOLD_EVENT, target.headers)
    deadline = time.monotonic() + timeout_s
    while True:
        have = len(addresses(server, function))
        if have >= concurrency or time.monotonic() > deadline:
            time.sleep(HOLD_S)  # calls still holding their containers finish first
            return have
        run_load([holding] * concurrency, 1.0, tool)


def _median(results: list[LoadResult]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        key: round(statistics.median(getattr(r, key) for r in results), 3) for key in FIGURES
    }
    summary["requests"] = sum(r.requests for r in results)
    summary["errors"] = sum(r.errors for r in results)
    return summary


def _alternate(
    loads: dict[str, list[Target]], *, duration_s: float, rounds: int, tool: str,
    cpu_s: Callable[[], float] | None = None,
) -> tuple[dict[str, list[LoadResult]], dict[str, str], dict[str, list[float]]]:  # fmt: skip
    """Each side of ``loads`` ``rounds`` times, alternating (A B, B A, ...), after one
    unmeasured round of each (first calls pay for caches and allocations); also the sides
    whose load generator could not keep its clock, and, with ``cpu_s`` (a process's CPU
    seconds so far), that process's CPU µs per request of each round."""
    runs: dict[str, list[LoadResult]] = {path: [] for path in loads}
    cpu_us: dict[str, list[float]] = {path: [] for path in loads}
    distorted: dict[str, str] = {}
    for path, targets in loads.items():
        try:
            run_load(targets, min(duration_s, 2.0), tool)
        except LoadDistorted as exc:
            distorted[path] = str(exc)
    for i in range(rounds):
        order = list(loads) if i % 2 == 0 else list(reversed(loads))
        for path in order:
            if path in distorted:
                continue
            before = cpu_s() if cpu_s is not None else 0.0
            result = run_load(loads[path], duration_s, tool)
            runs[path].append(result)
            if cpu_s is not None:
                cpu_us[path].append((cpu_s() - before) / max(1, result.requests) * 1e6)
    return runs, distorted, cpu_us


def _sides(runs: dict[str, list[LoadResult]], distorted: dict[str, str]) -> dict[str, Any]:
    """The median figures of each side, or why a side is not a measurement."""
    figures: dict[str, Any] = {}
    for path, results in runs.items():
        figures[path] = _median(results) if results else {"skipped": distorted[path]}
        failed, sent = figures[path].get("errors", 0), figures[path].get("requests", 0)
        if failed > max_error_share * max(sent, 1):
            # figures of a run that mostly failed describe the failures, not the path
            figures[path] = {"skipped": f"{failed:,} errors in {sent:,} requests", **figures[path]}
    return figures


def compare(
    server: DevServer, function: str, concurrency: int, *, duration_s: float, rounds: int,
    tool: str,
) -> dict[str, Any]:  # fmt: skip
    """Through Main and direct at ``concurrency``, ``rounds`` times each, alternating, after
    one unmeasured round of each (first calls pay for caches and allocations)."""
    containers = entries(server, function)[:concurrency]
    if len(containers) < concurrency:
        raise RuntimeError(
            f"{function} has {len(containers)} containers, {concurrency} are needed; "
            "warm it up first"
        )
    loads = {
        "through_main": [main_target(server, function)] * concurrency,
        "direct": [direct_target(entry) for entry in containers],
    }
    runs, distorted, _ = _alternate(loads, duration_s=duration_s, rounds=rounds, tool=tool)
    figures: dict[str, Any] = {"concurrency": concurrency, **_sides(runs, distorted)}
    main, straight = figures["through_main"], figures["direct"]
    if "skipped" not in main and "skipped" not in straight:
        figures.update(
            overhead_p50_ms=round(main["p50_ms"] - straight["p50_ms"], 3),
            overhead_p95_ms=round(main["p95_ms"] - straight["p95_ms"], 3),
            overhead_p99_ms=round(main["p99_ms"] - straight["p99_ms"], 3),
            latency_ratio_p50=round(main["p50_ms"] / straight["p50_ms"], 2),
            throughput_ratio=round(main["rps"] / straight["rps"], 3) if straight["rps"] else None,
        )
    figures["rounds"] = {path: [r.to_dict() for r in results] for path, results in runs.items()}
    return figures


def measure(
    server: DevServer, function: str, *, levels: tuple[int, ...], warm_duration_s: float,
    warm_rounds: int, duration_s: float, rounds: int, tool: str, warm_up_timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """The warm-latency figures at concurrency 1, then throughput at each level."""
    warm_up(server, function, 1, tool, warm_up_timeout_s)
    figures: dict[str, Any] = {
        "warm_c1": compare(
            server, function, 1, duration_s=warm_duration_s, rounds=warm_rounds, tool=tool
        ),
        "throughput": [],
    }
    for level in levels:
        begun = time.monotonic()
        have = warm_up(server, function, level, tool, warm_up_timeout_s)
        print(f"  c={level}: {have} containers after {time.monotonic() - begun:.1f} s of warm-up",
              file=sys.stderr)  # fmt: skip
        if have < level:
            figures["throughput"].append(
                {"concurrency": level, "skipped": f"only {have} containers started in time"}
            )
            continue
        figures["throughput"].append(
            compare(server, function, level, duration_s=duration_s, rounds=rounds, tool=tool)
        )
    return figures


def web_overhead(
    server: DevServer, function: str, *, duration_s: float, rounds: int, tool: str,
    warm_up_timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """The web route against /invoke at concurrency 1, on one function and one container,
    alternating: what turning a request into an API Gateway event and the result into a
    response costs (the event is larger, so the container parses a little more too).

    Latency on a busy machine varies by more than the difference itself, so Main's CPU time
    per call is measured beside it, which the noise of other processes barely moves."""
    warm_up(server, function, 1, tool, warm_up_timeout_s)
    loads = {"invoke": [main_target(server, function)], "web": [web_target(server, function)]}
    runs, distorted, cpu_us = _alternate(
        loads, duration_s=duration_s, rounds=rounds, tool=tool,
        cpu_s=lambda: process_stats(server.pid)["cpu_s"],
    )  # fmt: skip
    figures: dict[str, Any] = {"concurrency": 1, **_sides(runs, distorted)}
    for path, samples in cpu_us.items():
        if samples and "skipped" not in figures[path]:
            figures[path]["main_cpu_us"] = round(statistics.median(samples), 1)
    invoke, web = figures["invoke"], figures["web"]
    if "skipped" not in invoke and "skipped" not in web:
        figures.update(
            overhead_p50_ms=round(web["p50_ms"] - invoke["p50_ms"], 3),
            overhead_p99_ms=round(web["p99_ms"] - invoke["p99_ms"], 3),
            overhead_main_cpu_us=round(web["main_cpu_us"] - invoke["main_cpu_us"], 1),
        )
    figures["conversion_us"] = conversion_us()
    figures["rounds"] = {path: [r.to_dict() for r in results] for path, results in runs.items()}
    return figures


def conversion_us(n: int = 20_000) -> dict[str, float]:
    """What the web route adds in Main's own code, timed in this process: a curl-like POST
    turned into each payload format's event, and a 2.0 result into a response (µs each,
    the best of three runs of ``n``); no network, so no noise of other processes."""
    request = WebRequest(
        method="POST", raw_path="/items/5", raw_query="q=1",
        headers=(("Host", "127.0.0.1:8080"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*"),
                 ("Content-Type", "application/json"), ("Content-Length", "17")),
        body=BENCH_EVENT, source_ip="127.0.0.1", protocol="HTTP/1.1",
        request_id="0f8fad5b-d9cb-469f-a165-70867728950e", domain="127.0.0.1:8080",
        api_id="bench", account_id="0123456789abcdef",
    )  # fmt: skip
    result = {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hello"}
    drop = frozenset({"authorization"})

    def best(work: Any) -> float:
        return round(min(timeit.repeat(work, number=n, repeat=3)) / n * 1e6, 2)

    return {
        "event_2_0": best(lambda: web_http_api.event(request, drop=drop)),
        "event_1_0": best(lambda: web_rest_api.event(request, drop=drop)),
        "response_2_0": best(lambda: web_http_api.response(result, b"")),
    }
