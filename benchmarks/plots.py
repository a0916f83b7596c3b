"""PNG plots of a ``hotpool bench`` run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no screen on a server

import matplotlib.pyplot as plt

from hotpool.benchmarks.report import ran_backends

COLOURS = {"through_main": "#d9534f", "direct": "#5b8def"}
LABELS = {"through_main": "through Main", "direct": "direct to the container"}


def plot_all(figures: dict[str, Any], out: Path) -> list[Path]:
    ran = ran_backends(figures)
    if not ran:
        return []
    paths = [
        _warm(ran, out / "warm_latency.png"),
        _throughput(ran, out / "throughput.png"),
        _cold(ran, out / "cold_start.png"),
        _connections(ran, out / "connections.png"),
    ]
    if any("skipped" not in b["memory"] for b in ran.values()):
        paths.append(_memory(ran, out / "memory.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _warm(ran: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(ran), figsize=(5 * len(ran), 3.6), squeeze=False)
    for ax, (name, backend) in zip(axes[0], ran.items(), strict=True):
        warm = backend["latency"]["warm_c1"]
        stats = ("p50_ms", "p95_ms", "p99_ms")
        for i, path_name in enumerate(("through_main", "direct")):
            values = [warm[path_name][s] for s in stats]
            xs = [j + (i - 0.5) * 0.38 for j in range(len(stats))]
            ax.bar(xs, values, 0.38, label=LABELS[path_name], color=COLOURS[path_name])
        ax.set_xticks(range(len(stats)), ["p50", "p95", "p99"])
        ax.set_ylabel("latency (ms)")
        ax.set_title(
            f"{name}: warm call, concurrency 1\noverhead p50 {warm['overhead_p50_ms']:.3f} ms, "
            f"p99 {warm['overhead_p99_ms']:.3f} ms",
            fontsize=10,
        )
        ax.legend(fontsize=8)
    return _save(fig, path)


def _throughput(ran: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, axes = plt.subplots(2, len(ran), figsize=(5 * len(ran), 6.4), squeeze=False)
    for col, (name, backend) in enumerate(ran.items()):
        all_levels = backend["latency"]["throughput"]
        xs = [t["concurrency"] for t in all_levels]
        for path_name in ("through_main", "direct"):
            levels = [t for t in all_levels if "skipped" not in t.get(path_name, t)]
            colour = COLOURS[path_name]
            at = [t["concurrency"] for t in levels]
            axes[0][col].plot(at, [t[path_name]["rps"] for t in levels], "o-", color=colour,
                              label=LABELS[path_name])  # fmt: skip
            axes[1][col].plot(at, [t[path_name]["p50_ms"] for t in levels], "o-", color=colour,
                              label=f"{LABELS[path_name]} p50")  # fmt: skip
            axes[1][col].plot(at, [t[path_name]["p99_ms"] for t in levels], "o--", color=colour,
                              label=f"{LABELS[path_name]} p99")  # fmt: skip
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel("concurrent connections")
            ax.legend(fontsize=7)
        axes[0][col].set_ylabel("requests/s")
        axes[0][col].set_title(f"{name}: throughput", fontsize=10)
        axes[1][col].set_ylabel("latency (ms)")
        axes[1][col].set_yscale("log")
    return _save(fig, path)


def _cold(ran: dict[str, dict[str, Any]], path: Path) -> Path:
    parts = ("placement_ms", "code_fetch_ms", "container_start_ms", "init_ms")
    colours = ("#999999", "#f0ad4e", "#5b8def", "#5cb85c")
    labels, bars = [], []
    for name, backend in ran.items():
        for mode in ("fresh", "prewarmed"):
            labels.append(f"{name}\n{mode}")
            bars.append(backend["cold_start"][mode])
    fig, ax = plt.subplots(figsize=(1.6 * len(bars) + 2, 3.8))
    bottoms = [0.0] * len(bars)
    for part, colour in zip(parts, colours, strict=True):
        values = [b["breakdown_p50_ms"][part] for b in bars]
        ax.bar(labels, values, bottom=bottoms, color=colour, label=part.removesuffix("_ms"))
        bottoms = [x + v for x, v in zip(bottoms, values, strict=True)]
    ax.plot(labels, [b["p50_ms"] for b in bars], "k_", markersize=30, label="total p50")
    ax.set_ylabel("ms (p50)")
    ax.set_title("cold start: breakdown of the p50 call", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _connections(ran: dict[str, dict[str, Any]], path: Path) -> Path:
    labels, values, notes = [], [], []
    for name, backend in ran.items():
        for key, label in (("connections", "kept alive"), ("connections_new_per_call", "per call")):
            labels.append(f"{name}\n{label}")
            values.append(backend[key]["time_wait_new"])
            notes.append(f"{backend[key]['invocations']:,} calls")
    fig, ax = plt.subplots(figsize=(1.8 * len(labels) + 2, 3.6))
    bars = ax.bar(labels, values, color=["#5cb85c", "#d9534f"] * len(ran))
    for bar, note in zip(bars, notes, strict=True):
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylabel("new TIME_WAIT sockets")
    ax.set_title("connections Main → containers", fontsize=10)
    return _save(fig, path)


def _memory(ran: dict[str, dict[str, Any]], path: Path) -> Path:
    names = [n for n, b in ran.items() if "skipped" not in b["memory"]]
    what = (("main_rss_mib", "Main"), ("manager_rss_mib", "Manager"))
    fig, ax = plt.subplots(figsize=(2.2 * len(names) + 3, 3.6))
    width = 0.26
    for i, name in enumerate(names):
        memory = ran[name]["memory"]
        values = [memory[k] for k, _ in what] + [memory["idle_container"]["bootstrap_rss_mib"]]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(3)]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(3), [label for _, label in what] + ["idle container"])
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("resident memory", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
