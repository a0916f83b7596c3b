"""TIME_WAIT sockets left by warm invocations (ADR-000's port-exhaustion worry).

A TCP connection's active closer keeps its end in TIME_WAIT for 60 s on Linux, and every
such socket holds a local port: a caller that opens one connection per call to a few
containers runs out of ephemeral ports. Main keeps its connections to containers open
(``HOTPOOL_CONTAINER_KEEPALIVE``, on by default); the variant with it off closes each one
after its call, as ADR-000's design did. Both are measured on the machine's socket table
(/proc/net/tcp and tcp6): the TIME_WAIT sockets that appeared during the run with one end on
Main's port or a container's port (other processes on the machine open connections too; the
machine-wide count is reported beside it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hotpool.benchmarks.devserver import DevServer
from hotpool.benchmarks.latency import addresses, main_target, warm_up
from hotpool.benchmarks.loadgen import run_load

TIME_WAIT = "06"


def time_wait_sockets() -> set[tuple[str, str]]:
    """Every TIME_WAIT socket on the machine, as (local, remote) address pairs in the kernel's
    hex notation (``0100007F:1F90``)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TIME_WAIT:
                found.add((fields[1], fields[2]))
    return found


def measure(
    server: DevServer, function: str, *, invocations: int, rps_hint: float, concurrency: int,
    tool: str,
) -> dict[str, Any]:  # fmt: skip
    """About ``invocations`` warm calls through Main at ``concurrency``, then the TIME_WAIT
    sockets that appeared meanwhile (the load generator's own closing connections included)."""
    warm_up(server, function, concurrency, tool, timeout_s=60)
    before = time_wait_sockets()
    results = []
    rps = max(rps_hint, 1.0)
    while (done := sum(r.requests for r in results)) < invocations:
        # runs of a fixed length (wrk has no request count) until the count is reached
        duration_s = max(1.0, math.ceil((invocations - done) / rps * 1.05))
        results.append(run_load([main_target(server, function)] * concurrency, duration_s, tool))
        rps = max(results[-1].rps, 1.0)
    after = time_wait_sockets()
    ports = {urlsplit(server.main_url).port} | {
        int(a.rpartition(":")[2]) for a in addresses(server, function)
    }
    new = after - before
    requests = sum(r.requests for r in results)
    return {
        "invocations": requests,
        "errors": sum(r.errors for r in results),
        "concurrency": concurrency,
        "rps": round(requests / sum(r.duration_s for r in results), 1),
        "time_wait_new": sum(1 for pair in new if _ports(pair) & ports),
        "time_wait_new_machine_wide": len(new),
        "time_wait_on_machine": len(after),
    }


def _ports(pair: tuple[str, str]) -> set[int]:
    return {int(end.rpartition(":")[2], 16) for end in pair}
