"""HTTP load from outside hotpool: ``wrk`` (Debian's package) when it is installed, else
aiohttp's client in a separate process (``python -m hotpool.benchmarks.loadgen``).

Every run is closed-loop: each connection sends its next request when the previous answer
is in. A run gets one target per connection, so "direct" runs can give each connection its
own container (a container serves one call at a time) while "through Main" runs give every
connection the same URL. wrk runs one thread per connection for that reason: a wrk thread
connects all of its connections to one address.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

TOOLS = ("wrk", "aiohttp")
WRK_SHARED_THREADS = 4  # wrk threads when every connection goes to one address
WRK_GRACE_S = 60


@dataclass(frozen=True)
class Target:
    """One connection's request: POST ``body`` to ``url`` with ``headers``."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadResult:
    tool: str
    concurrency: int
    duration_s: float
    requests: int
    errors: int  # non-2xx answers, connection errors and timeouts
    rps: float  # successful answers per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def pick_tool(wanted: str = "auto") -> str:
    """``wrk`` if asked for or installed (auto), else ``aiohttp``."""
    if wanted == "auto":
        return "wrk" if shutil.which("wrk") else "aiohttp"
    if wanted == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk), use --loadgen aiohttp")
    if wanted not in TOOLS:
        raise ValueError(f"unknown load generator {wanted!r}; use one of {', '.join(TOOLS)}")
    return wanted


def run_load(targets: list[Target], duration_s: float, tool: str) -> LoadResult:
    """``len(targets)`` connections, each sending its target for ``duration_s`` seconds."""
    if tool == "wrk":
        return _run_wrk(targets, duration_s)
    return _run_aiohttp_process(targets, duration_s)


# -- wrk -----------------------------------------------------------------------------------

_WRK_SCRIPT = """
local targets = %(targets)s
local body = %(body)s
local next_target = 0
setup = function(thread)
  next_target = next_target + 1
  local t = targets[next_target]
  thread.addr = wrk.lookup(t.host, t.port)[1]
  thread:set("path", t.path)
  thread:set("headers", t.headers)
end
init = function(args)
  local hdrs = {}
  for name, value in pairs(headers) do hdrs[name] = value end
  hdrs["Content-Type"] = hdrs["Content-Type"] or "application/json"
  req = wrk.format("POST", path, hdrs, body)
end
request = function() return req end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "errors": %%d, "failed": %%d, "p50_us": %%d, ' ..
    '"p95_us": %%d, "p99_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    e.status + e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.mean))
end
"""


def _lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return "[==[" + text + "]==]"


def _wrk_script(targets: list[Target]) -> str:
    entries = []
    for target in targets:
        parts = urlsplit(target.url)
        headers = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in target.headers)
        entries.append(
            f'{{host = "{parts.hostname}", port = "{parts.port}", '
            f"path = {_lua_string(parts.path)}, headers = {{{headers}}}}}"
        )
    bodies = {t.body for t in targets}
    if len(bodies) != 1:
        raise ValueError("a wrk run sends one body on every connection")
    return _WRK_SCRIPT % {
        "targets": "{" + ",\n".join(entries) + "}",
        "body": _lua_string(bodies.pop()),
    }


class LoadDistorted(RuntimeError):
    """The load generator could not keep its own clock: its figures would mislead."""


def _run_wrk(targets: list[Target], duration_s: float) -> LoadResult:
    n = len(targets)
    # a wrk thread sends all its connections to one address: one thread per connection when
    # they go to different containers, a few threads when they all go to Main
    threads = min(n, WRK_SHARED_THREADS) if len(set(targets)) == 1 else n
    seconds = max(1, math.ceil(duration_s))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_wrk_script(targets[:threads]))
    begun = time.monotonic()
    try:
        done = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(n), "-d", f"{seconds}s", "--timeout", "30s",
             "-s", script.name, targets[0].url],
            capture_output=True, text=True, timeout=seconds + WRK_GRACE_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LoadDistorted(
            f"wrk with {threads} threads did not finish a {seconds} s run within "
            f"{WRK_GRACE_S} s more: too many threads for this machine's cores"
        ) from None
    finally:
        os.unlink(script.name)
    if time.monotonic() - begun > 2 * seconds + 5:
        # its threads ran long past the end it counts from: requests/s would be inflated
        raise LoadDistorted(
            f"wrk with {threads} threads took {time.monotonic() - begun:.0f} s for a {seconds} s "
            "run: too many threads for this machine's cores"
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith('{"requests"')), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line)
    elapsed_s = raw["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        concurrency=n,
        duration_s=round(elapsed_s, 3),
        requests=raw["requests"],
        errors=raw["errors"],
        # wrk's requests are the answers it read; connection errors are counted apart
        rps=round(max(0, raw["requests"] - raw["failed"]) / elapsed_s, 1),
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
    )


# -- aiohttp in a separate process -----------------------------------------------------------


def _run_aiohttp_process(targets: list[Target], duration_s: float) -> LoadResult:
    spec = {
        "duration_s": duration_s,
        "targets": [
            {"url": t.url, "body": t.body.decode(), "headers": dict(t.headers)} for t in targets
        ],
    }
    done = subprocess.run(
        [sys.executable, "-m", "hotpool.benchmarks.loadgen"],
        input=json.dumps(spec), capture_output=True, text=True, timeout=duration_s + 120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the aiohttp load generator failed: {done.stderr[-2000:]}")
    return LoadResult(**json.loads(done.stdout))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (nearest rank), NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def _aiohttp_load(targets: list[dict], duration_s: float) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop_at = 0.0

    async def connection(target: dict) -> None:
        nonlocal errors
        body = target["body"].encode()
        headers = {"Content-Type": "application/json", **target["headers"]}
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.perf_counter() < stop_at:
                begun = time.perf_counter()
                try:
                    async with session.post(target["url"], data=body, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status < 400
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append((time.perf_counter() - begun) * 1000)
                errors += not ok

    begun = time.perf_counter()
    stop_at = begun + duration_s
    await asyncio.gather(*(connection(t) for t in targets))
    elapsed = time.perf_counter() - begun
    latencies.sort()
    return LoadResult(
        tool="aiohttp",
        concurrency=len(targets),
        duration_s=round(elapsed, 3),
        requests=len(latencies),
        errors=errors,
        rps=round((len(latencies) - errors) / elapsed, 1),
        p50_ms=round(percentile(latencies, 50), 3),
        p95_ms=round(percentile(latencies, 95), 3),
        p99_ms=round(percentile(latencies, 99), 3),
        mean_ms=round(sum(latencies) / max(1, len(latencies)), 3),
    )


def _worker_main() -> int:
    """``python -m hotpool.benchmarks.loadgen``: a spec as JSON on stdin, a LoadResult as JSON
    out."""
    import uvloop

    spec = json.load(sys.stdin)
    result = uvloop.run(_aiohttp_load(spec["targets"], spec["duration_s"]))
    json.dump(result.to_dict(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
