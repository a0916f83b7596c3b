"""Idle memory of one warm container (after one invocation), per backend.

    python -m benchmarks.container_memory [--backends process,docker] [--json FILE]

Reports the resident set size (VmRSS) of the bootstrap's Python process, and for Docker also
of everything in the container (the tini init included) and the cgroup's own figure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from benchmarks.devserver import DevServer, dev_server, emit
from shared.packages import zip_directory

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


async def _warm_container(server: DevServer) -> dict:
    main_url, manager_url = server.main_url, server.manager_url
    async with aiohttp.ClientSession(headers=server.headers) as session:
        code = zip_directory(ROOT / "examples" / "hello")
        async with session.put(
            f"{main_url}/v1/functions/mem", data=code, headers={"Content-Type": "application/zip"}
        ) as resp:
            assert resp.status in (200, 201)
        for _ in range(20):
            async with session.post(f"{main_url}/v1/functions/mem/invoke", data=b"{}") as resp:
                assert resp.status == 200
        await asyncio.sleep(1.0)  # idle
        async with session.get(
            f"{manager_url}/v1/containers", headers=server.manager_headers
        ) as resp:
            (container,) = (await resp.json())["containers"]
        return container


async def _docker_figures(container_id: str) -> dict[str, float]:
    import aiodocker

    async with aiodocker.Docker() as docker:
        info = await docker.containers.container(container_id).show()
        stats = await docker.containers.container(container_id).stats(stream=False)
    pids = descendants(info["State"]["Pid"])
    memory = stats[0]["memory_stats"]
    cache = memory.get("stats", {}).get("total_inactive_file", 0)
    return {
        "bootstrap_rss_mib": round(max(rss_kib(p) for p in pids) / 1024, 1),
        "all_processes_rss_mib": round(sum(rss_kib(p) for p in pids) / 1024, 1),
        "cgroup_usage_mib": round((memory["usage"] - cache) / 2**20, 1),
    }


def measure(backend: str, port: int) -> dict[str, float]:
    with dev_server(port, backend=backend, prewarm_count=0) as server:
        container = asyncio.run(_warm_container(server))
        if backend == "docker":
            return asyncio.run(_docker_figures(container["container_id"]))
        # the process backend: the bootstrap is a child of the dev server
        pids = [p for p in descendants(server.pid) if p != server.pid]
        time.sleep(0.1)
        return {"bootstrap_rss_mib": round(max(rss_kib(p) for p in pids) / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="process,docker")
    parser.add_argument("--port", type=int, default=18680)
    parser.add_argument("--json")
    args = parser.parse_args()
    return emit({b: measure(b, args.port) for b in args.backends.split(",")}, args.json)


if __name__ == "__main__":
    sys.exit(main())
