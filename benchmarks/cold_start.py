"""Cold-start time: a fresh container vs a pre-warmed one specialised with code, per backend.

    python -m benchmarks.cold_start [--n 20] [--backends process,docker] [--json FILE]

For each backend and mode it starts ``hotpool dev`` (fresh: ``prewarm_count=0``; pre-warmed:
``prewarm_count=2``, waiting until the pool is full before each call), deploys a new version
of a trivial function before every measured call (a new version always cold-starts), and
times the first invocation from a separate process. The breakdown (placement, code fetch,
container start, init) comes from each call's execution record.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from benchmarks.devserver import DevServer, dev_server, emit
from benchmarks.warm_latency import percentile
from shared.packages import zip_directory

ROOT = Path(__file__).resolve().parents[1]
BREAKDOWN_KEYS = ("placement_ms", "code_fetch_ms", "container_start_ms", "init_ms")


async def _wait_prewarmed(session: aiohttp.ClientSession, manager_url: str, n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with session.get(manager_url + "/healthz") as resp:
            if (await resp.json())["prewarmed"] >= n:
                return
        await asyncio.sleep(0.02)
    raise RuntimeError("the pre-warm pool did not fill")


async def _run(server: DevServer, n: int, prewarm: int) -> dict[str, object]:
    main_url, manager_url = server.main_url, server.manager_url
    code = zip_directory(ROOT / "examples" / "hello")
    samples: list[float] = []
    parts: dict[str, list[float]] = {k: [] for k in BREAKDOWN_KEYS}
    async with aiohttp.ClientSession(headers=server.headers) as session:
        for i in range(n + 2):  # the first two warm up the machine and are not counted
            async with session.put(
                f"{main_url}/v1/functions/cold", data=code,
                headers={"Content-Type": "application/zip"},
            ) as resp:  # fmt: skip
                assert resp.status in (200, 201), await resp.text()
            if prewarm:
                await _wait_prewarmed(session, manager_url, prewarm)
            begun = time.perf_counter()
            async with session.post(f"{main_url}/v1/functions/cold/invoke", data=b"{}") as resp:
                await resp.read()
                assert resp.headers["X-Hotpool-Cold-Start"] == "true"
            elapsed_ms = (time.perf_counter() - begun) * 1000
            if i < 2:
                continue
            samples.append(elapsed_ms)
            await asyncio.sleep(0.3)  # let the record writer flush
            async with session.get(f"{main_url}/v1/functions/cold/invocations?limit=1") as resp:
                (record,) = (await resp.json())["invocations"]
            breakdown = record["cold_start_breakdown"]
            assert breakdown["prewarmed"] == bool(prewarm), breakdown
            for key in BREAKDOWN_KEYS:
                parts[key].append(breakdown[key])
    return {
        "n": n,
        "p50_ms": round(percentile(samples, 50), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "breakdown_p50_ms": {k: round(percentile(v, 50), 1) for k, v in parts.items()},
    }


def measure(backend: str, n: int, port: int) -> dict[str, object]:
    results = {}
    for mode, prewarm in (("fresh", 0), ("prewarmed", 2)):
        with dev_server(port, backend=backend, prewarm_count=prewarm) as server:
            results[mode] = asyncio.run(_run(server, n, prewarm))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--backends", default="process,docker")
    parser.add_argument("--port", type=int, default=18580)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    return emit({b: measure(b, args.n, args.port) for b in args.backends.split(",")}, args.json)


if __name__ == "__main__":
    sys.exit(main())
