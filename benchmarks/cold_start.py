"""Cold starts: a fresh container vs a pre-warmed one specialised with the function's code.

A new version is deployed before every measured call (a new version always cold-starts), and
the call is timed from this process, a separate one from hotpool. The breakdown (placement,
code fetch, container start, init) comes from the call's execution record. Fresh runs use
``prewarm_count=0``; pre-warmed runs wait for the pre-warm pool to be full before each call.
"""

from __future__ import annotations

import time
from typing import Any

from hotpool.benchmarks.devserver import DevServer, bench_zip, dev_server
from hotpool.benchmarks.loadgen import percentile

BREAKDOWN_KEYS = ("placement_ms", "code_fetch_ms", "container_start_ms", "init_ms")
WARM_UP_CALLS = 2  # the first cold starts load caches on the machine: not counted


def series(
    server: DevServer, n: int, prewarm: int, *, code: bytes | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``n`` cold starts of new versions of a function (``code``, deploy ``params``; the
    bench function by default), from ``prewarm`` pre-warmed containers or none."""
    samples: list[float] = []
    parts: dict[str, list[float]] = {k: [] for k in BREAKDOWN_KEYS}
    code = bench_zip() if code is None else code
    for i in range(n + WARM_UP_CALLS):
        server.deploy("cold", code, **(params or {}))
        if prewarm:
            server.wait_prewarmed(prewarm)
        begun = time.perf_counter()
        headers, _ = server.invoke("cold")
        elapsed_ms = (time.perf_counter() - begun) * 1000
        if headers.get("X-Hotpool-Cold-Start") != "true":
            raise RuntimeError("a call of a new version was not a cold start")
        if i < WARM_UP_CALLS:
            continue
        samples.append(elapsed_ms)
        breakdown = _breakdown(server, headers["X-Hotpool-Request-Id"])
        if breakdown["prewarmed"] != bool(prewarm):
            raise RuntimeError(f"expected prewarmed={bool(prewarm)}: {breakdown}")
        for key in BREAKDOWN_KEYS:
            parts[key].append(breakdown[key])
    return {
        "n": n,
        "p50_ms": round(percentile(samples, 50), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "breakdown_p50_ms": {k: round(percentile(v, 50), 1) for k, v in parts.items()},
    }


def _breakdown(server: DevServer, request_id: str, timeout_s: float = 10) -> dict[str, Any]:
    """The call's cold-start breakdown, once the record writer has stored it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in server.records("cold", 5):
            if record["request_id"] == request_id:
                return record["cold_start_breakdown"]
        time.sleep(0.05)
    raise RuntimeError(f"no execution record for {request_id}")


def measure(backend: str, n: int, **settings: object) -> dict[str, Any]:
    """Fresh and pre-warmed series on ``backend``, each on its own ``hotpool dev``."""
    results = {}
    for mode, prewarm in (("fresh", 0), ("prewarmed", 2)):
        with dev_server(backend=backend, prewarm_count=prewarm, **settings) as server:
            results[mode] = series(server, n, prewarm)
    return results


def measure_image(image: str, n: int, **settings: object) -> dict[str, Any]:
    """Cold starts of a container-image function (Docker only, never pre-warmed): the relay
    container and the image's own, then the image's runtime client's first poll. A new
    version of the same image each time, so the image's layers are on disk (as on a node
    that ran it before) but no container of it is."""
    repository = image.rpartition(":")[0] if ":" in image.rpartition("/")[2] else image
    allow = repository.partition("/")[0] + "/" if "/" in repository else repository
    with dev_server(backend="docker", prewarm_count=0, image_allow=allow, **settings) as server:
        return {"image": image, **series(server, n, 0, code=b"", params={"image": image})}
