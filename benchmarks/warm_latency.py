"""Warm-invocation latency at concurrency 1: through Main, and straight to the container.

    python -m benchmarks.warm_latency [--n 2000] [--json FILE]

Starts ``hotpool dev`` in a child process with a throw-away state directory, deploys a
trivial function, warms one container, then measures sequential invocations from this
process (a separate process from the server, using aiohttp's client with one kept-alive
connection): N through Main's REST API, then N directly against the container's /invoke.
The difference of the two is what hotpool adds on top of the function call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from benchmarks.devserver import DevServer, dev_server, emit
from shared.packages import zip_directory

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 3),
        "p95_ms": round(percentile(samples_ms, 95), 3),
        "p99_ms": round(percentile(samples_ms, 99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }


async def _wait_up(session: aiohttp.ClientSession, url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"hotpool did not come up at {url}")


async def _timed(session: aiohttp.ClientSession, url: str, body: bytes, n: int) -> list[float]:
    samples = []
    headers = {"Content-Type": "application/json"}
    for _ in range(n):
        begun = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url} answered {resp.status}")
        samples.append((time.perf_counter() - begun) * 1000)
    return samples


async def measure(server: DevServer, n: int) -> dict[str, object]:
    main_url, manager_url = server.main_url, server.manager_url
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=server.headers) as session:
        await _wait_up(session, main_url)
        code = zip_directory(ROOT / "examples" / "hello")
        async with session.put(
            f"{main_url}/v1/functions/hello", data=code,
            headers={"Content-Type": "application/zip"},
        ) as resp:  # fmt: skip
            assert resp.status in (200, 201), await resp.text()
        invoke_url = f"{main_url}/v1/functions/hello/invoke"
        body = b'{"name": "bench"}'
        await _timed(session, invoke_url, body, 200)  # cold start, then warm-up
        async with session.get(
            f"{manager_url}/v1/containers", headers=server.manager_headers
        ) as resp:
            (container,) = (await resp.json())["containers"]
        direct_url = f"http://{container['address']}/invoke"
        await _timed(session, direct_url, body, 200)
        through_main = await _timed(session, invoke_url, body, n)
        direct = await _timed(session, direct_url, body, n)
    main_s, direct_s = summarise(through_main), summarise(direct)
    return {
        "through_main": main_s,
        "direct": direct_s,
        "overhead_p50_ms": round(main_s["p50_ms"] - direct_s["p50_ms"], 3),
        "overhead_p99_ms": round(main_s["p99_ms"] - direct_s["p99_ms"], 3),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--port", type=int, default=18480)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE",
        help="a hotpool setting for the server, e.g. redis_url=redis://127.0.0.1:6379/13",
    )  # fmt: skip
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.setting)
    with dev_server(args.port, **settings) as server:
        figures = asyncio.run(measure(server, args.n))
    figures["settings"] = sorted(settings)
    return emit(figures, args.json)


if __name__ == "__main__":
    sys.exit(main())
