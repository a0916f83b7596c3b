"""Memory and CPU: RSS of Main, of a Manager and of one idle warm container, and Main's CPU
time per warm invocation, with /metrics on (as everywhere in the bench) and off.

Main and the Manager run as two processes (``hotpool main``, ``hotpool manager``) so each has
a figure of its own. An idle container is one that served calls and then sat idle for a
second; its figure is the RSS of the bootstrap process (for Docker, also every process in the
container, Docker's init included).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from hotpool.benchmarks.devserver import (
    DevServer,
    bench_zip,
    descendants,
    private_mib,
    process_stats,
    split_services,
)
from hotpool.benchmarks.latency import main_target, warm_up
from hotpool.benchmarks.loadgen import run_load

IDLE_S = 1.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def container_pids(backend: str, container_id: str, manager_pid: int) -> list[int]:
    """The processes of one container: for Docker, everything under its init."""
    if backend == "docker":
        done = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", container_id],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return descendants(int(done.stdout.strip()))
    # the process backend: the bootstrap child whose code dir names the container
    return [p for p in descendants(manager_pid) if container_id in _cmdline(p)]


def container_rss(backend: str, container_id: str, manager_pid: int) -> dict[str, float]:
    pids = container_pids(backend, container_id, manager_pid)
    if not pids:
        raise RuntimeError(f"no process found for container {container_id}")
    sizes = {p: process_stats(p)["rss_mib"] for p in pids}
    biggest = max(sizes, key=sizes.__getitem__)
    figures = {
        "bootstrap_rss_mib": round(sizes[biggest], 1),
        "bootstrap_private_mib": round(private_mib(biggest), 1),
    }
    if backend == "docker":
        figures["all_processes_rss_mib"] = round(sum(sizes.values()), 1)
    return figures


def idle_container(
    server: DevServer, function: str, backend: str, idle_s: float = IDLE_S
) -> dict[str, float]:
    """RSS of one of ``function``'s containers once it has been idle for ``idle_s``."""
    time.sleep(idle_s)
    container = server.containers_of(function)[0]
    return container_rss(backend, container["container_id"], server.manager_pid or server.pid)


def measure(backend: str, redis_url: str, *, duration_s: float, tool: str) -> dict[str, Any]:
    """Main and Manager as separate processes on ``redis_url``: their RSS after warm calls,
    Main's CPU per call, and an idle container's RSS."""
    with split_services(redis_url, backend=backend, prewarm_count=0) as server:
        assert server.manager_pid is not None
        cpu_us, invocations = main_cpu_us(server, "mem", duration_s, tool)
        container = idle_container(server, "mem", backend)
        figures = {
            "main_rss_mib": round(process_stats(server.pid)["rss_mib"], 1),
            "manager_rss_mib": round(process_stats(server.manager_pid)["rss_mib"], 1),
            "main_cpu_us_per_invocation": cpu_us,
            "invocations": invocations,
            "idle_container": container,
        }
    # /metrics off: the invoke path counts nothing (a function of its own: the Redis is shared)
    off = {"metrics_port": 0, "manager_metrics_port": 0}
    with split_services(redis_url, backend=backend, prewarm_count=0, **off) as server:
        figures["main_cpu_us_per_invocation_metrics_off"] = main_cpu_us(
            server, "memoff", duration_s, tool
        )[0]
    return figures


def main_cpu_us(server: DevServer, function: str, duration_s: float, tool: str):
    """Main's CPU µs per warm invocation of a new ``function`` under load, and the count."""
    server.deploy(function, bench_zip())
    warm_up(server, function, 1, tool, timeout_s=60)
    cpu_before = process_stats(server.pid)["cpu_s"]
    result = run_load([main_target(server, function)], duration_s, tool)
    cpu_s = process_stats(server.pid)["cpu_s"] - cpu_before
    return round(cpu_s / max(1, result.requests) * 1e6, 1), result.requests
