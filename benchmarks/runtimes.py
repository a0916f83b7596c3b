"""Each runtime's own figures: warm overhead, an idle container's RSS beside its language's
floor, and the pre-warmed cold start.

Every runtime serves the same tiny function (``FUNCTIONS``; a Go program on Lambda's Runtime
API for ``provided``), on its own ``hotpool dev`` that
pre-warms that runtime only. Warm overhead is Main's p50 minus a direct call's p50 at
concurrency 1 (``latency.compare``, alternating rounds). The floor is the language's
interpreter doing nothing (``node -e`` with a timer, ``python3 -I -S`` sleeping), started
the way the backend starts a container: on the process backend the host's binary, on the
Docker backend inside the runtime's image. The container is measured idle twice: after its
first calls (the warm-up) and after the warm-overhead load (thousands of calls), each time
``IDLE_S`` after its last call, by RSS and by private memory (USS: what one more container
costs, where RSS also counts the interpreter's pages every container shares), each beside the
floor's. A runtime this machine cannot run (no ``node``, no image) is skipped with the reason.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from typing import Any

from hotpool.benchmarks import cold_start, latency
from hotpool.benchmarks.devserver import (
    DevServer,
    bench_zip,
    dev_server,
    private_mib,
    process_stats,
)
from hotpool.benchmarks.format import fmt
from hotpool.benchmarks.memory import idle_container
from hotpool.benchmarks.runtime_go import go_missing, go_zip
from hotpool.shared.runtimes import RUNTIMES
from hotpool.shared.settings import Settings

NODE_HANDLER = """exports.handler = async (event) => {
  if (event.sleep_s) await new Promise((resolve) => setTimeout(resolve, event.sleep_s * 1000));
  return { message: "hello", event };
};
"""
FLOOR_S = 1.0  # how long the bare interpreter runs before its RSS is read
# how long a container has been idle when it is measured: past the Node.js runtime's idle
# collection (manager/runtime/nodejs/lib/idle.js, 1 s after the last call)
IDLE_S = 1.5


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, source in files.items():
            archive.writestr(name, source)
    return buffer.getvalue()


def _python() -> tuple[bytes, dict[str, str]]:
    return bench_zip(), {}


def _nodejs() -> tuple[bytes, dict[str, str]]:
    return _zip({"index.js": NODE_HANDLER}), {"runtime": "nodejs"}


def _provided() -> tuple[bytes, dict[str, str]]:
    return go_zip(), {"runtime": "provided"}


# runtime -> (the function's zip, its deploy parameters)
FUNCTIONS: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
    "python": _python,
    "nodejs": _nodejs,
    "provided": _provided,
}
# runtime -> the command of its interpreter doing nothing
FLOORS: dict[str, list[str]] = {
    "python": ["python3", "-I", "-S", "-c", "import time; time.sleep(60)"],
    "nodejs": ["node", "-e", "setInterval(() => {}, 60000)"],
    # the relay is the container's largest process (the Go bootstrap beside it is smaller)
    "provided": ["python3", "-I", "-S", "-c", "import time; time.sleep(60)"],
}


def floor_memory(runtime: str, backend: str) -> dict[str, float]:
    """RSS and private memory (MiB) of ``runtime``'s interpreter doing nothing, started as
    ``backend`` would."""
    command = FLOORS[runtime]
    if backend == "docker":
        image = Settings.from_env().runtime_images[runtime]
        name = f"hotpool-bench-floor-{runtime}-{time.monotonic_ns()}"
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", name, "--entrypoint", command[0], image,
             *command[1:]],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            time.sleep(FLOOR_S)
            pid = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", name],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            return _memory(int(pid))
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    if command[0] == "python3":  # the interpreter the process backend runs the bootstrap on
        command = [sys.executable, *command[1:]]
    proc = subprocess.Popen(command)
    try:
        time.sleep(FLOOR_S)
        return _memory(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _memory(pid: int) -> dict[str, float]:
    return {
        "rss_mib": round(process_stats(pid)["rss_mib"], 1),
        "private_mib": round(private_mib(pid), 1),
    }


def missing(runtime: str, backend: str) -> str | None:
    """Why ``runtime`` cannot be measured on ``backend`` here, or None."""
    if runtime not in RUNTIMES:
        return f"{runtime!r} is not a runtime of this hotpool"
    if backend == "process" and runtime == "nodejs" and shutil.which("node") is None:
        return "no node on this machine"
    if runtime == "provided" and (reason := go_missing()):
        return reason
    if backend == "docker":
        image = Settings.from_env().runtime_images[runtime]
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        if found.returncode != 0:
            return f"no image {image} (deploy/build-images.sh builds it)"
    return None


def _one(
    server: DevServer, runtime: str, backend: str, *, cold_n: int, duration_s: float,
    rounds: int, tool: str, warm_up_timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    code, params = FUNCTIONS[runtime]()
    function = f"rt-{runtime}"
    server.deploy(function, code, **params)
    latency.warm_up(server, function, 1, tool, warm_up_timeout_s)
    first = idle_container(server, function, backend, IDLE_S)
    warm = latency.compare(server, function, 1, duration_s=duration_s, rounds=rounds, tool=tool)
    warm.pop("rounds", None)
    idle = idle_container(server, function, backend, IDLE_S)
    floor = floor_memory(runtime, backend)
    cold = cold_start.series(server, cold_n, prewarm=2, code=code, params=params)
    return {
        "warm_c1": warm,
        "idle_after_first_calls": first,
        "idle_container": idle,
        "floor_rss_mib": floor["rss_mib"],
        "floor_private_mib": floor["private_mib"],
        "first_over_floor_mib": round(first["bootstrap_rss_mib"] - floor["rss_mib"], 1),
        "idle_over_floor_mib": round(idle["bootstrap_rss_mib"] - floor["rss_mib"], 1),
        "private_over_floor_mib": round(idle["bootstrap_private_mib"] - floor["private_mib"], 1),
        "cold_start_prewarmed": cold,
    }


def measure(
    backend: str, *, cold_n: int, duration_s: float, rounds: int, tool: str,
    warm_up_timeout_s: float, runtimes: tuple[str, ...] = tuple(FUNCTIONS),
) -> dict[str, Any]:  # fmt: skip
    """Each runtime's figures on ``backend``, each on its own ``hotpool dev``."""
    figures: dict[str, Any] = {}
    for runtime in runtimes:
        if reason := missing(runtime, backend):
            figures[runtime] = {"skipped": reason}
            continue
        with dev_server(backend=backend, prewarm_runtimes=runtime, prewarm_count=2) as server:
            figures[runtime] = _one(
                server, runtime, backend, cold_n=cold_n, duration_s=duration_s, rounds=rounds,
                tool=tool, warm_up_timeout_s=warm_up_timeout_s,
            )  # fmt: skip
    return figures


def summary(figures: dict[str, Any] | None) -> dict[str, Any]:
    """Per runtime: warm overhead p50, idle RSS over the language's floor, pre-warmed cold
    start p50 (``benchmarks.runtimes``); None where it did not run."""
    out: dict[str, Any] = {}
    for runtime, f in (figures or {}).items():
        ran = "skipped" not in f
        warm = f["warm_c1"].get("overhead_p50_ms") if ran else None
        out[f"{runtime}_warm_overhead_p50_ms"] = warm
        for figure in ("first_over_floor_mib", "idle_over_floor_mib", "private_over_floor_mib"):
            out[f"{runtime}_{figure}"] = f.get(figure) if ran else None
        out[f"{runtime}_cold_prewarmed_p50_ms"] = (
            f["cold_start_prewarmed"]["p50_ms"] if ran else None
        )
    return out


def table(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return []
    lines = ["", "| runtime | warm overhead p50 (ms) | idle RSS after first calls / after load "
             "| bare interpreter RSS | private memory after load / bare "
             "| pre-warmed cold start p50 / p95 (ms) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for runtime, f in figures.items():
        if "skipped" in f:
            lines.append(f"| {runtime} | not measured: {f['skipped']} |||||")
            continue
        cold, first, idle = (
            f["cold_start_prewarmed"],
            f["idle_after_first_calls"],
            f["idle_container"],
        )
        lines.append(
            f"| {runtime} | {fmt(f['warm_c1'].get('overhead_p50_ms'))} | "
            f"{fmt(first['bootstrap_rss_mib'])} / {fmt(idle['bootstrap_rss_mib'])} MiB | "
            f"{fmt(f['floor_rss_mib'])} MiB | "
            f"{fmt(idle['bootstrap_private_mib'])} / {fmt(f['floor_private_mib'])} MiB | "
            f"{fmt(cold['p50_ms'])} / {fmt(cold['p95_ms'])} |"
        )
    return lines
