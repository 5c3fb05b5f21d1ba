"""Charts of how a run went, beside the per-class charts: the timeline (fleet, server work, and both
processes' health against scenario time, rollout waves and privilege changes marked), storage used
against capacity per device class, and delta-sync time per network preset. Inline SVG strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simulator.health import CPU_LIMIT, LAG_LIMIT_MS
from simulator.metrics import SyncRecord, TimelineSample
from simulator.reports.charts import _empty, _styled, class_colors, to_svg

MARK_COLOR = "#888888"


def _mark(axes: Sequence[Any], marks: Sequence[Mapping[str, Any]]) -> None:
    """Dotted vertical lines at rollout waves and privilege changes, labelled on the top panel."""
    for m in marks:
        minutes = m["t"] / 60
        for ax in axes:
            ax.axvline(minutes, color=MARK_COLOR, lw=0.8, ls=":")
        axes[0].annotate(m["label"], (minutes, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                         fontsize=7, color="#555555", ha="right", va="top")


MAX_POINTS = 400  # a timeline longer than this many samples is drawn in as many bins


def _binned(samples: Sequence[TimelineSample]) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """The samples folded into at most MAX_POINTS bins of equal count: each bin's start (scenario
    minutes), per field its mean (devices, rows/s, CPU), sum (429s) or max (loop lags), and the bin's
    length in seconds."""
    n = len(samples)
    size = max(1, -(-n // MAX_POINTS))
    edges = np.arange(0, n, size)
    t = np.array([s.t for s in samples])

    out: dict[str, np.ndarray] = {}
    counts = np.diff(np.append(edges, n))
    for name, values in (("online", [s.devices_online for s in samples]), ("syncing", [s.devices_syncing for s in samples]),
                         ("offline", [s.devices_offline for s in samples]), ("rows", [s.rows_per_s for s in samples]),
                         ("cpu", [s.gen_cpu * 100 for s in samples])):
        out[name] = np.add.reduceat(np.asarray(values, dtype=float), edges) / counts
    out["throttled"] = np.add.reduceat(np.asarray([s.throttled for s in samples], dtype=float), edges)
    out["lag"] = np.maximum.reduceat(np.asarray([s.gen_loop_lag_ms for s in samples], dtype=float), edges)
    out["server_lag"] = np.maximum.reduceat(np.asarray([s.server_loop_lag_ms or 0 for s in samples], dtype=float), edges)
    bin_s = float(np.median(np.diff(t))) * size if n > 1 else 1.0
    return t[edges] / 60, out, bin_s


@_styled
def timeline(samples: Sequence[TimelineSample], marks: Sequence[Mapping[str, Any]]) -> str:
    """Panels against scenario minutes: devices online / syncing; rows served per second and 429s;
    and, in a real-time run, event-loop lag of the device and server processes (with the 100 ms
    saturation line). A long run is drawn in at most MAX_POINTS bins (means; 429s summed; lags at
    their worst)."""
    if not samples:
        return _empty("No timeline recorded")
    from matplotlib.figure import Figure

    t, v, bin_s = _binned(samples)
    generator = any(s.gen_cpu or s.gen_loop_lag_ms or s.server_loop_lag_ms for s in samples)
    fig = Figure(figsize=(10.5, 7.2 if generator else 5.0), layout="constrained")
    axes = list(fig.subplots(3 if generator else 2, 1, sharex=True))
    fleet, served = axes[0], axes[1]
    fleet.plot(t, v["online"], color="#2ca02c", lw=1.5, label="online")
    fleet.plot(t, v["syncing"], color="#1f77b4", lw=1.5, label="syncing")
    fleet.plot(t, v["offline"], color="#d62728", lw=1.0, label="offline (airplane)")
    fleet.set(ylabel="Devices")
    served.plot(t, v["rows"], color="#3182bd", lw=1.3, label="rows served / s")
    throttled = served.twinx()
    per = "second" if bin_s <= 1.0 else f"{bin_s:,.0f} s"
    throttled.bar(t, v["throttled"], width=max(t[-1] - t[0], 1) / max(len(t), 1), color="#fd8d3c", alpha=0.6,
                  label="429s")
    throttled.set_ylabel(f"429s per {per}")
    throttled.set_ylim(0, max(1.0, float(v["throttled"].max())) * 1.1)
    served.set(ylabel="Rows / s")
    legends = [throttled]
    if generator:
        health = axes[2]
        health.plot(t, v["lag"], color="#9467bd", lw=1.3, label="devices: loop lag")
        health.plot(t, v["server_lag"], color="#8c564b", lw=1.0, label="server: loop lag")
        health.axhline(LAG_LIMIT_MS, color="#d62728", lw=0.8, ls="--", label=f"{LAG_LIMIT_MS:g} ms")
        cpu = health.twinx()
        cpu.plot(t, v["cpu"], color="#17becf", lw=0.9, ls="-.", label="devices: CPU %")
        cpu.axhline(CPU_LIMIT * 100, color="#17becf", lw=0.6, ls=":")
        cpu.set_ylabel("CPU % of a core")
        cpu.set_ylim(0, max(100.0, float(v["cpu"].max())) * 1.05)
        health.set(ylabel="Loop lag (ms)")
        legends.append(cpu)
    axes[-1].set(xlabel="Scenario time (min since the run's start)")
    for ax in axes:
        ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False, fontsize=8)
    for ax in legends:
        ax.legend(loc="lower left", bbox_to_anchor=(1.08, 0.0), frameon=False, fontsize=8)
    _mark(axes, marks)
    return to_svg(fig)


@_styled
def storage(records: Sequence[SyncRecord]) -> str:
    """Storage used against capacity: each device's last record, grouped by user class and device
    capacity (a device class), as used MB dots over capacity bars."""
    last: dict[str, SyncRecord] = {}
    for r in records:
        if r.storage_capacity_bytes > 0:
            last[r.device] = r
    if not last:
        return _empty("No storage recorded")
    groups: dict[str, list[SyncRecord]] = {}
    for r in last.values():
        groups.setdefault(f"{r.user_class}\n{r.storage_capacity_bytes / 1e6:,.0f} MB devices", []).append(r)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    labels = sorted(groups)
    for i, label in enumerate(labels):
        used = np.array([r.storage_used_bytes for r in groups[label]]) / 1e6
        capacity = max(r.storage_capacity_bytes for r in groups[label]) / 1e6
        ax.bar(i, capacity, width=0.6, color="#e5e5e5", edgecolor="#bbbbbb")
        ax.scatter(np.full(used.size, i) + np.linspace(-0.2, 0.2, used.size), used, s=14, color="#3182bd", zorder=3)
        full = int((used >= capacity * 0.999).sum())
        ax.annotate(f"{used.size} devices, {full} full", (i, capacity), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yscale("log")
    ax.set(ylabel="MB (log): used (dots) of capacity (bar)")
    ax.grid(axis="x", visible=False)
    return to_svg(fig)


@_styled
def delta_by_network(records: Sequence[SyncRecord]) -> str:
    """Delta-sync time (lived s) per network preset: box plots of successful, non-final delta syncs."""
    by_net: dict[str, list[float]] = {}
    for r in records:
        if r.mode == "DELTA_SYNC" and r.result == "success" and not r.final:
            by_net.setdefault(r.network or "?", []).append(r.duration_s)
    if not by_net:
        return _empty("No delta syncs recorded")
    nets = sorted(by_net, key=lambda n: float(np.median(by_net[n])))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    colors = class_colors(nets)
    parts = ax.boxplot([by_net[n] for n in nets], showfliers=True, patch_artist=True, widths=0.5)
    for patch, n in zip(parts["boxes"], nets, strict=True):
        patch.set(facecolor=colors[n], alpha=0.5)
    ax.set_xticks(range(1, len(nets) + 1), [f"{n}\n(n={len(by_net[n])})" for n in nets])
    ax.set(ylabel="Delta sync duration (s)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="x", visible=False)
    return to_svg(fig)
