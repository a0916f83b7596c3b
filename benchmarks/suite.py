"""``hotpool bench``: every latency, throughput, asynchronous, cold-start, connection and memory
figure of hotpool in one run, per container backend, written as JSON, a Markdown table and PNG
plots.

    hotpool bench [--quick] [--backends process,docker] [--json FILE] [--out DIR]

``--quick`` (about 3 min, the embedded default only unless --backends says otherwise)
runs every scenario briefly; the full run is what the README's figures come from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hotpool.benchmarks import (
    async_invocations,
    cold_start,
    connections,
    latency,
    memory,
    metrics_cost,
    runtimes,
    streaming,
)
from hotpool.benchmarks.devserver import bench_zip, dev_server
from hotpool.benchmarks.loadgen import pick_tool
from hotpool.benchmarks.report import summarise, write_results
from hotpool.shared.local_redis import LocalRedis, wanted_binary
from hotpool.shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BENCH_FUNCTION = "bench"
# the web route's function: the same answer on /invoke and on /fn/ (a 2.0 response)
WEB_FUNCTION = "benchweb"
# the container-image function of the image cold start (tests/lambda_image/build.sh)
LAMBDA_IMAGE = "hotpool-test/lambda-python:latest"
WEB_HANDLER = """def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hello"}
"""


@dataclass(frozen=True)
class Plan:
    """How long and how much each scenario runs."""

    warm_duration_s: float
    warm_rounds: int
    levels: tuple[int, ...]
    duration_s: float
    rounds: int
    connection_invocations: int
    variant_invocations: int
    cold_n: int
    memory_duration_s: float
    warm_up_timeout_s: float
    async_clients: int  # connections sending events (and the baseline's calls) at once
    async_accepts: int
    async_idle_events: int
    async_backlog: int
    stream_calls: int  # streamed calls timed to their first byte, through Main and direct
    ws_messages: int  # WebSocket round trips (and the synchronous baseline's calls)
    ws_clients: int  # connections sending messages at once, for messages per second
    ws_idle_connections: int  # open at once on one Main, for its memory per connection


QUICK = Plan(2, 1, (1, 8, 64), 1, 1, 5_000, 5_000, 3, 2, 30, 16, 1_000, 30, 500, 100, 400, 8, 200)
FULL = Plan(
    5, 3, (1, 8, 64, 256), 5, 2, 100_000, 20_000, 20, 5, 180, 64, 10_000, 500, 10_000,
    1_000, 5_000, 16, 1_000,
)  # fmt: skip


def machine(tool: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadgen": tool,
    }


def docker_missing(settings: Settings) -> str | None:
    """Why the Docker backend cannot run here, or None."""
    if not shutil.which("docker"):
        return "Docker is not installed (bash deploy/docker-up.sh)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker daemon is not running (bash deploy/docker-up.sh)"
    image = settings.runtime_image_python
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        return f"the runtime image {image} is missing (hotpool images build)"
    return None


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[str | None]:
    """A redis-server of the run's own (for Main and Manager as separate processes)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    server = LocalRedis(binary, directory)
    try:
        yield server.start()
    finally:
        server.stop()


def _image_cold_start(image: str, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The container-image function's cold start, when its image is on this machine."""
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        return {"skipped": f"no image {image} (tests/lambda_image/build.sh builds one)"}
    log(f"cold starts of the container image {image}")
    return cold_start.measure_image(image, n)


def run_backend(
    backend: str, plan: Plan, tool: str, work: Path, lambda_image: str = LAMBDA_IMAGE
) -> dict[str, Any]:
    log = _progress(backend)
    # Prometheus metrics on the invoke path, timed in this process
    figures: dict[str, Any] = {"metrics": metrics_cost.measure()}
    with dev_server(backend=backend) as server:
        figures["redis"] = _dev_redis(Settings.from_env())
        server.deploy(BENCH_FUNCTION, bench_zip(), max_concurrency=max(plan.levels) + 44)
        log("warm latency and throughput")
        figures["latency"] = latency.measure(
            server, BENCH_FUNCTION, levels=plan.levels, warm_duration_s=plan.warm_duration_s,
            warm_rounds=plan.warm_rounds, duration_s=plan.duration_s, rounds=plan.rounds,
            tool=tool, warm_up_timeout_s=plan.warm_up_timeout_s,
        )  # fmt: skip
        log("the web route against /invoke, c=1")
        server.deploy(WEB_FUNCTION, bench_zip(WEB_HANDLER))
        figures["web"] = latency.web_overhead(
            # a difference of tens of microseconds: more rounds than the other figures need
            server, WEB_FUNCTION, duration_s=plan.warm_duration_s, rounds=plan.warm_rounds + 2,
            tool=tool, warm_up_timeout_s=plan.warm_up_timeout_s,
        )  # fmt: skip
        log(f"{plan.connection_invocations} invocations, kept-alive connections")
        c8 = next(t for t in figures["latency"]["throughput"] if t["concurrency"] == 8)
        rps_hint = c8["through_main"].get("rps", 1000.0)
        figures["connections"] = connections.measure(
            server, BENCH_FUNCTION, invocations=plan.connection_invocations,
            rps_hint=rps_hint, concurrency=8, tool=tool,
        )  # fmt: skip
    log(f"{plan.variant_invocations} invocations, one connection per call")
    with dev_server(backend=backend, container_keepalive="false") as server:
        server.deploy(BENCH_FUNCTION, bench_zip())
        figures["connections_new_per_call"] = connections.measure(
            server, BENCH_FUNCTION, invocations=plan.variant_invocations,
            rps_hint=rps_hint / 2, concurrency=8, tool=tool,
        )  # fmt: skip
    log(
        f"asynchronous invocations: {plan.async_accepts} accepts, {plan.async_idle_events} "
        f"idle starts, a backlog of {plan.async_backlog}"
    )
    figures["async"] = async_invocations.measure(
        backend, clients=plan.async_clients, accepts=plan.async_accepts,
        idle_events=plan.async_idle_events, backlog=plan.async_backlog, tool=tool,
        warm_up_timeout_s=plan.warm_up_timeout_s,
    )  # fmt: skip
    log(
        f"streaming: {plan.stream_calls} first bytes, {plan.ws_messages} WebSocket messages, "
        f"{plan.ws_idle_connections} idle connections"
    )
    figures["streaming"] = streaming.measure(
        backend, ttfb_calls=plan.stream_calls, messages=plan.ws_messages,
        clients=plan.ws_clients, idle_connections=plan.ws_idle_connections,
    )  # fmt: skip
    log("cold starts")
    figures["cold_start"] = cold_start.measure(backend, plan.cold_n)
    log("each runtime: warm overhead, idle RSS beside its interpreter, pre-warmed cold start")
    figures["runtimes"] = runtimes.measure(
        backend, cold_n=plan.cold_n, duration_s=plan.warm_duration_s, rounds=plan.warm_rounds,
        tool=tool, warm_up_timeout_s=plan.warm_up_timeout_s,
    )  # fmt: skip
    if backend == "docker":
        figures["cold_start_image"] = _image_cold_start(lambda_image, plan.cold_n, log)
    log("memory and CPU")
    with private_redis(work / f"redis-{backend}") as redis_url:
        if redis_url is None:
            figures["memory"] = {"skipped": "no redis-server to run Main and Manager apart"}
        else:
            figures["memory"] = memory.measure(
                backend, redis_url, duration_s=plan.memory_duration_s, tool=tool
            )
    return figures


def _dev_redis(settings: Settings) -> str:
    if settings.redis_url or settings.redis_sentinels:
        return "HOTPOOL_REDIS_URL / HOTPOOL_REDIS_SENTINELS"
    if wanted_binary(settings):
        return "private redis-server on a unix socket"
    return "in-process stand-in (fakeredis)"


def _progress(backend: str):
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {backend}: {message}", file=sys.stderr)

    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotpool bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every scenario, briefly (~3 min)")
    parser.add_argument(
        "--backends", help="comma-separated (default: process for --quick, else process,docker)"
    )
    parser.add_argument("--json", help="also write the summary figures to this file")
    parser.add_argument("--out", default="bench-results", help="results folder (a run each)")
    parser.add_argument("--loadgen", default="auto", help="wrk, aiohttp or auto (wrk if any)")
    parser.add_argument(
        "--lambda-image", default=LAMBDA_IMAGE, help="the image of the image-function cold start"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    tool = pick_tool(args.loadgen)
    backends = (args.backends or ("process" if args.quick else "process,docker")).split(",")
    settings = Settings.from_env()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(args.out) / f"{stamp}-{'quick' if args.quick else 'full'}"
    run_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": machine(tool),
        "plan": plan.__dict__,
        "backends": {},
    }
    for backend in backends:
        missing = docker_missing(settings) if backend == "docker" else None
        if missing:
            print(f"{backend}: skipped: {missing}", file=sys.stderr)
            figures["backends"][backend] = {"skipped": missing}
            continue
        figures["backends"][backend] = run_backend(
            backend, plan, tool, run_dir, lambda_image=args.lambda_image
        )
    figures["summary"] = summarise(figures)
    table = write_results(figures, run_dir)
    print(table)
    print(f"\nresults: {run_dir}/ (figures.json, summary.json, report.md, *.png)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures["summary"], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
