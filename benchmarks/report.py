"""The results of ``hotpool bench``: the summary figures and targets, a Markdown report, and
PNG plots (matplotlib), written into one folder per run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hotpool.benchmarks import runtimes
from hotpool.benchmarks.format import fmt

# (summary key, what it measures, limit, "max" = at most the limit, "min" = at least)
TARGETS = (
    ("warm_overhead_p50_ms", "warm overhead over a direct call, c=1, p50 (ms)", 0.5, "max"),
    ("warm_overhead_p99_ms", "warm overhead over a direct call, c=1, p99 (ms)", 2.0, "max"),
    ("web_overhead_p50_ms", "web route (/fn/) overhead over /invoke, c=1, p50 (ms)", 0.05, "max"),
    ("throughput_ratio_c64", "throughput through Main / direct, c=64", 0.5, "min"),
    ("async_start_p50_ms", "async event, idle: 202 to handler start, p50 (ms)", 5.0, "max"),
    ("cold_prewarmed_p50_ms", "cold start, pre-warmed container, p50 (ms)", 50.0, "max"),
    ("cold_fresh_docker_p50_ms", "cold start, fresh Docker container, p50 (ms)", 400.0, "max"),
    ("time_wait_after_run", "TIME_WAIT sockets after the connection run", 100, "max"),
    ("idle_container_rss_mib", "idle warm Python container RSS (MiB)", 15.0, "max"),
    (
        "nodejs_first_over_floor_mib",
        "idle Node.js container RSS over bare node, after its first calls (MiB)",
        10,
        "max",
    ),
    (
        "nodejs_idle_over_floor_mib",
        "idle Node.js container RSS over bare node, after thousands of calls (MiB)",
        10,
        "max",
    ),
    ("nodejs_cold_prewarmed_p50_ms", "Node.js cold start, pre-warmed, p50 (ms)", 50.0, "max"),
    ("ws_idle_kib_per_connection", "Main's memory per idle WebSocket connection (KiB)", 50, "max"),
    (
        "metrics_us_per_invocation",
        "Prometheus metrics on the invoke path (µs per call)",
        5.0,
        "max",
    ),
)


SIDES = ("through_main", "direct")


def ran_backends(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The backends that ran (not skipped), by name."""
    return {b: f for b, f in figures["backends"].items() if "skipped" not in f}


def _c64(backend: dict[str, Any]) -> dict[str, Any] | None:
    levels = backend["latency"]["throughput"]
    return next((t for t in levels if t["concurrency"] == 64 and "throughput_ratio" in t), None)


def summarise(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline figures (null where a scenario did not run). Single numbers come from the
    embedded default (process backend) when it ran; ``*_by_backend`` has every backend's."""
    ran = ran_backends(figures)
    primary = ran.get("process") or next(iter(ran.values()), None)

    def by_backend(get) -> dict[str, Any]:
        out = {}
        for name, backend in ran.items():
            try:
                out[name] = get(backend)
            except (KeyError, TypeError):
                out[name] = None
        return out

    warm = by_backend(lambda b: b["latency"]["warm_c1"])
    web = by_backend(lambda b: b["web"]["overhead_p50_ms"])
    ratio = by_backend(lambda b: _c64(b)["throughput_ratio"])
    memory = by_backend(lambda b: b["memory"]["idle_container"]["bootstrap_rss_mib"])
    name = next((b for b, f in ran.items() if f is primary), None)
    conn = primary["connections"] if primary else None
    summary: dict[str, Any] = {
        "warm_overhead_p50_ms": warm[name]["overhead_p50_ms"] if name and warm[name] else None,
        "warm_overhead_p99_ms": warm[name]["overhead_p99_ms"] if name and warm[name] else None,
        "throughput_ratio_c64": ratio.get(name) if name else None,
        "web_overhead_p50_ms": web.get(name) if name else None,
        "web_overhead_p50_ms_by_backend": web,
        "web_overhead_main_cpu_us_by_backend": by_backend(
            lambda b: b["web"]["overhead_main_cpu_us"]
        ),
        # the route's own conversion work in Main, timed in process (no network noise)
        "web_conversion_us": by_backend(lambda b: b["web"]["conversion_us"]).get(name),
        "cold_prewarmed_p50_ms": by_backend(lambda b: b["cold_start"]["prewarmed"]["p50_ms"]),
        "cold_fresh_p50_ms": by_backend(lambda b: b["cold_start"]["fresh"]["p50_ms"]),
        "time_wait_after_run": conn["time_wait_new"] if conn else None,
        "invocations_in_connection_run": conn["invocations"] if conn else None,
        "time_wait_new_connection_per_call": (
            primary["connections_new_per_call"]["time_wait_new"] if primary else None
        ),
        "invocations_in_new_connection_run": (
            primary["connections_new_per_call"]["invocations"] if primary else None
        ),
        "idle_container_rss_mib": max((v for v in memory.values() if v), default=None),
        "main_cpu_us_per_invocation": by_backend(
            lambda b: b["memory"]["main_cpu_us_per_invocation"]
        ),
        "main_cpu_us_per_invocation_metrics_off": by_backend(
            lambda b: b["memory"]["main_cpu_us_per_invocation_metrics_off"]
        ),
        "metrics_us_per_invocation": by_backend(lambda b: b["metrics"]["us_per_invocation"]).get(
            name
        ),
        "summary_backend": name,
        "warm_overhead_p50_ms_by_backend": {b: w and w["overhead_p50_ms"] for b, w in warm.items()},
        "warm_overhead_p99_ms_by_backend": {b: w and w["overhead_p99_ms"] for b, w in warm.items()},
        "throughput_ratio_c64_by_backend": ratio,
        "idle_container_rss_mib_by_backend": memory,
        **_async_summary(primary.get("async") if primary else None),
        **_streaming_summary(primary.get("streaming") if primary else None),
    }
    summary.update(runtimes.summary(primary.get("runtimes") if primary else None))
    summary["errors_in_load_runs"] = sum(_errors(b) for b in ran.values())
    summary["targets"] = _targets(summary)
    return summary


ASYNC_KEYS = (
    "async_accepts_per_s", "async_accepts_sync_calls_per_s", "async_accepts_ratio",
    "async_start_p50_ms", "async_start_p99_ms", "async_backlog_events",
    "async_drain_events_per_s", "async_drain_sync_calls_per_s", "async_drain_ratio",
    "async_events_accepted", "async_events_not_succeeded",
)  # fmt: skip


def _async_summary(figures: dict[str, Any] | None) -> dict[str, Any]:
    """The asynchronous headline figures (of benchmarks.async_invocations), null if none."""
    if figures is None:
        return dict.fromkeys(ASYNC_KEYS)
    accepts, idle, backlog = figures["accepts"], figures["idle_start"], figures["backlog"]
    # the backlog's events, and those that held the consumer while it was accepted
    ended = [accepts["async"]["ended"], backlog["async"]["ended"]]
    ended.append(backlog["async"].get("holders_ended", {}))
    accepted = idle["events"] + sum(sum(counts.values()) for counts in ended)
    succeeded = sum(counts.get("succeeded", 0) for counts in ended)
    succeeded += idle["events"] - idle["not_succeeded"]
    return {
        "async_accepts_per_s": accepts["async"]["per_s"],
        "async_accepts_sync_calls_per_s": accepts["sync"]["per_s"],
        "async_accepts_ratio": accepts.get("ratio"),
        "async_start_p50_ms": idle["from_202_p50_ms"],
        "async_start_p99_ms": idle["from_202_p99_ms"],
        "async_backlog_events": backlog["events"],
        "async_drain_events_per_s": backlog["async"].get("per_s"),
        "async_drain_sync_calls_per_s": backlog["sync"]["per_s"],
        "async_drain_ratio": backlog.get("ratio"),
        # every event looked up after its run: one not ended "succeeded" is a failure
        "async_events_accepted": accepted,
        "async_events_not_succeeded": accepted - succeeded,
    }


STREAMING_KEYS = (
    "stream_first_byte_p50_ms", "stream_first_byte_direct_p50_ms", "stream_first_byte_ratio",
    "ws_round_trip_p50_ms", "ws_round_trip_p99_ms", "ws_round_trip_sync_p50_ms",
    "ws_messages_per_s", "ws_messages_sync_calls_per_s", "ws_messages_ratio",
    "ws_idle_connections", "ws_idle_kib_per_connection",
)  # fmt: skip


def _streaming_summary(figures: dict[str, Any] | None) -> dict[str, Any]:
    """The streaming and WebSocket headline figures (of benchmarks.streaming), null if none."""
    if figures is None:
        return dict.fromkeys(STREAMING_KEYS)
    ttfb, idle = figures["time_to_first_byte"], figures["idle_connections"]
    trip, rates = figures["websocket"]["round_trip"], figures["websocket"]["messages_per_s"]
    return {
        "stream_first_byte_p50_ms": ttfb["through_main"]["p50_ms"],
        "stream_first_byte_direct_p50_ms": ttfb["direct"]["p50_ms"],
        "stream_first_byte_ratio": ttfb["ratio_p50"],
        "ws_round_trip_p50_ms": trip["websocket"]["p50_ms"],
        "ws_round_trip_p99_ms": trip["websocket"]["p99_ms"],
        "ws_round_trip_sync_p50_ms": trip["sync_invoke"]["p50_ms"],
        "ws_messages_per_s": rates["websocket"],
        "ws_messages_sync_calls_per_s": rates["sync_invoke"],
        "ws_messages_ratio": rates["ratio"],
        "ws_idle_connections": idle["connections"],
        "ws_idle_kib_per_connection": idle["kib_per_connection"],
    }


def _errors(backend: dict[str, Any]) -> int:
    """Failed requests in every load run of a backend: figures of a run with errors mislead."""
    levels = [backend["latency"]["warm_c1"], *backend["latency"]["throughput"]]
    # a level skipped whole (too few containers started in time) ran no load
    runs = [t[side] for t in levels if "skipped" not in t for side in SIDES]
    runs += [backend["connections"], backend["connections_new_per_call"]]
    runs += [backend["web"][side] for side in ("invoke", "web") if "web" in backend]
    if "async" in backend:
        accepts, backlog = backend["async"]["accepts"], backend["async"]["backlog"]
        runs += [accepts["async"], accepts["sync"], backlog["sync"], backlog["async"]["accept"]]
    return sum(run.get("errors", 0) for run in runs)


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    values = dict(summary)
    prewarmed = [v for v in (summary["cold_prewarmed_p50_ms"] or {}).values() if v is not None]
    values["cold_prewarmed_p50_ms"] = max(prewarmed) if prewarmed else None
    values["cold_fresh_docker_p50_ms"] = (summary["cold_fresh_p50_ms"] or {}).get("docker")
    rows = []
    for key, what, limit, kind in TARGETS:
        value = values.get(key)
        met = None if value is None else (value <= limit if kind == "max" else value >= limit)
        rows.append({"target": what, "limit": limit, "kind": kind, "measured": value, "met": met})
    return rows


def markdown(figures: dict[str, Any]) -> str:
    m = figures["machine"]
    lines = [
        f"hotpool bench ({figures['mode']}), {m['date']}: {m['cores']} cores, Python "
        f"{m['python']}, commit {m['git_commit']}{' (dirty)' if m['git_dirty'] else ''}, "
        f"load generator {m['loadgen']}",
        "",
        "| target | limit | measured | met |",
        "|---|---|---|---|",
    ]
    for row in figures["summary"]["targets"]:
        sign = "≤" if row["kind"] == "max" else "≥"
        met = {True: "yes", False: "**no**", None: "not run"}[row["met"]]
        lines.append(f"| {row['target']} | {sign} {fmt(row['limit'])} | "
                     f"{fmt(row['measured'])} | {met} |")  # fmt: skip
    if figures["summary"].get("errors_in_load_runs"):
        lines += ["", f"**errors in load runs: {figures['summary']['errors_in_load_runs']}** "
                  "(see the tables below; throughput counts successful answers only)"]  # fmt: skip
    for name, backend in figures["backends"].items():
        lines += ["", f"### {name}"]
        if "skipped" in backend:
            lines.append(f"skipped: {backend['skipped']}")
            continue
        lines += _backend_tables(backend)
    return "\n".join(lines) + "\n"


def _backend_tables(b: dict[str, Any]) -> list[str]:
    lines = [
        f"Redis: {b['redis']}", "",
        "| concurrency | Main req/s | direct req/s | ratio | Main p50 / p99 (ms) | "
        "direct p50 / p99 (ms) | overhead p50 / p99 (ms) | errors (Main / direct) |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    rows = [("1 (warm latency run)", b["latency"]["warm_c1"])]
    rows += [(str(t["concurrency"]), t) for t in b["latency"]["throughput"]]
    for label, t in rows:
        if "skipped" in t:
            lines.append(f"| {label} | not measured: {t['skipped']} |||||||")
            continue
        missing = [f"{side}: {t[side]['skipped']}" for side in SIDES if "skipped" in t[side]]
        if missing:
            lines.append(f"| {label} | not measured: {'; '.join(missing)} |||||||")
            continue
        main, direct = t["through_main"], t["direct"]
        lines.append(
            f"| {label} | {fmt(main['rps'])} | {fmt(direct['rps'])} | "
            f"{fmt(t['throughput_ratio'])} | {fmt(main['p50_ms'])} / {fmt(main['p99_ms'])} | "
            f"{fmt(direct['p50_ms'])} / {fmt(direct['p99_ms'])} | "
            f"{fmt(t['overhead_p50_ms'])} / {fmt(t['overhead_p99_ms'])} | "
            f"{fmt(main['errors'])} / {fmt(direct['errors'])} |"
        )
    lines += _web_table(b.get("web"))
    lines += _async_table(b.get("async"))
    cold = b["cold_start"]
    lines += ["", "| cold start | p50 (ms) | p95 (ms) | placement | code fetch | container start "
              "| init |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for mode in ("fresh", "prewarmed"):
        c, parts = cold[mode], cold[mode]["breakdown_p50_ms"]
        lines.append(
            f"| {mode} | {fmt(c['p50_ms'])} | {fmt(c['p95_ms'])} | {fmt(parts['placement_ms'])}"
            f" | {fmt(parts['code_fetch_ms'])} | {fmt(parts['container_start_ms'])} | "
            f"{fmt(parts['init_ms'])} |"
        )
    lines += runtimes.table(b.get("runtimes"))
    keep, fresh = b["connections"], b["connections_new_per_call"]
    lines += [
        "", "| connections to containers | invocations | errors | req/s | new TIME_WAIT sockets |",
        "|---|---|---|---|---|",
        f"| kept alive | {fmt(keep['invocations'])} | {fmt(keep['errors'])} | "
        f"{fmt(keep['rps'])} | {fmt(keep['time_wait_new'])} |",
        f"| one per call | {fmt(fresh['invocations'])} | {fmt(fresh['errors'])} | "
        f"{fmt(fresh['rps'])} | {fmt(fresh['time_wait_new'])} |",
    ]  # fmt: skip
    mem = b["memory"]
    if "skipped" in mem:
        lines += ["", f"memory: skipped: {mem['skipped']}"]
    else:
        lines += [
            "", "| Main RSS | Manager RSS | idle container RSS | Main CPU per invocation |",
            "|---|---|---|---|",
            f"| {fmt(mem['main_rss_mib'])} MiB | {fmt(mem['manager_rss_mib'])} MiB | "
            f"{fmt(mem['idle_container']['bootstrap_rss_mib'])} MiB | "
            f"{fmt(mem['main_cpu_us_per_invocation'])} µs |",
        ]  # fmt: skip
    return lines


def _web_table(web: dict[str, Any] | None) -> list[str]:
    if web is None:
        return []
    lines = ["", "| c=1, one container | p50 (ms) | p99 (ms) | req/s | Main CPU per call (µs) "
             "| errors |", "|---|---|---|---|---|---|"]  # fmt: skip
    for side, label in (("invoke", "POST /v1/functions/{name}/invoke"), ("web", "ANY /fn/{name}/")):
        run = web[side]
        if "skipped" in run:
            lines.append(f"| {label} | not measured: {run['skipped']} |||||")
            continue
        lines.append(f"| {label} | {fmt(run['p50_ms'])} | {fmt(run['p99_ms'])} | "
                     f"{fmt(run['rps'])} | {fmt(run.get('main_cpu_us'))} | "
                     f"{fmt(run['errors'])} |")  # fmt: skip
    lines.append(f"| web overhead | {fmt(web.get('overhead_p50_ms'))} | "
                 f"{fmt(web.get('overhead_p99_ms'))} | | "
                 f"{fmt(web.get('overhead_main_cpu_us'))} | |")  # fmt: skip
    conversion = web.get("conversion_us")
    if conversion:
        lines += ["", "web conversion in Main, in process (µs): "
                  + ", ".join(f"{k} {fmt(v)}" for k, v in conversion.items())]  # fmt: skip
    return lines


def _async_table(figures: dict[str, Any] | None) -> list[str]:
    if figures is None:
        return []
    accepts, idle, backlog = figures["accepts"], figures["idle_start"], figures["backlog"]
    drain = backlog["async"]
    lines = [
        "", "| asynchronous | async | synchronous baseline | async / sync | errors |",
        "|---|---|---|---|---|",
        f"| {fmt(accepts['async']['requests'])} accepts (202/s) against calls/s, "
        f"{accepts['async']['clients']} clients | {fmt(accepts['async']['per_s'])} | "
        f"{fmt(accepts['sync']['per_s'])} | {fmt(accepts.get('ratio'))} | "
        f"{fmt(accepts['async']['errors'])} / {fmt(accepts['sync']['errors'])} |",
        f"| a backlog of {fmt(backlog['events'])}, events/s from the first start to the last "
        f"finish ({fmt(backlog.get('held_slots'))} at once), against calls/s at "
        f"c={backlog['concurrency']} | "
        f"{fmt(drain.get('per_s'))} | {fmt(backlog['sync']['per_s'])} | "
        f"{fmt(backlog.get('ratio'))} | {fmt(drain['accept']['errors'])} / "
        f"{fmt(backlog['sync']['errors'])} |",
        "",
        f"idle, one event at a time: 202 to the handler's start p50 "
        f"{fmt(idle['from_202_p50_ms'])} ms, p99 {fmt(idle['from_202_p99_ms'])} ms (from the "
        f"request's start: {fmt(idle['from_request_p50_ms'])} / "
        f"{fmt(idle['from_request_p99_ms'])} ms); backlog events that started before the "
        f"last was accepted: {fmt(drain.get('started_before_last_accept'))}; events that did "
        "not end succeeded: "
        f"{fmt(_async_summary(figures)['async_events_not_succeeded'])}",
    ]  # fmt: skip
    return lines


def write_results(figures: dict[str, Any], run_dir: Path) -> str:
    """figures.json, summary.json, report.md and the plots; returns the Markdown."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (run_dir / "summary.json").write_text(json.dumps(figures["summary"], indent=2) + "\n")
    from hotpool.benchmarks.plots import plot_all

    plots = plot_all(figures, run_dir)
    text = markdown(figures)
    images = "".join(f"\n![{p.stem}]({p.name})\n" for p in plots)
    (run_dir / "report.md").write_text(text + images)
    return text
