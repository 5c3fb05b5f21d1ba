"""The figures a nightly benchmark records per fleet size, read from a run's summary, and how each
one regresses (which direction is worse, and the default tolerance).

Per user class: first-sync p50/p95/p99, delta-sync p95, conflict, rejection and failure rates, and
unfinished first syncs. For the run: server requests and rows per second, 429s, the generator's loop
lag and CPU, the peak memory of both processes, and the ledger's violations. Names are flat:
`<class>.first_sync_p95_s`, `server_rows_per_s`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Rule:
    """How a metric regresses: `worse` says which way; `tolerance` is relative (0.2 = 20%) or
    absolute (in the metric's unit) as `kind` says."""

    worse: Literal["higher", "lower"]
    tolerance: float
    kind: Literal["relative", "absolute"] = "relative"
    unit: str = ""


CLASS_RULES: dict[str, Rule] = {
    "first_sync_p50_s": Rule("higher", 0.20, unit="s"),
    "first_sync_p95_s": Rule("higher", 0.20, unit="s"),
    "first_sync_p99_s": Rule("higher", 0.30, unit="s"),
    "delta_sync_p95_s": Rule("higher", 0.25, unit="s"),
    "conflict_rate": Rule("higher", 0.02, "absolute"),
    "rejection_rate": Rule("higher", 0.02, "absolute"),
    "failure_rate": Rule("higher", 0.02, "absolute"),
    "unfinished_first_syncs": Rule("higher", 0, "absolute", "devices"),
}
RUN_RULES: dict[str, Rule] = {
    "server_requests_per_s": Rule("lower", 0.20, unit="req/s"),
    "server_rows_per_s": Rule("lower", 0.20, unit="rows/s"),
    "throttled_429s": Rule("higher", 0.50),
    "throttle_rate": Rule("higher", 0.01, "absolute"),
    "generator_loop_lag_p99_ms": Rule("higher", 1.00, unit="ms"),
    "generator_cpu_p50": Rule("higher", 0.50),
    "devices_peak_rss_mb": Rule("higher", 0.15, unit="MiB"),
    "server_peak_rss_mb": Rule("higher", 0.15, unit="MiB"),
    "ledger_violations": Rule("higher", 0, "absolute"),
}


def rule_for(name: str) -> Rule:
    """The rule of a metric name (`<class>.<metric>` or a run metric)."""
    return RUN_RULES.get(name) or CLASS_RULES[name.rsplit(".", 1)[-1]]


def extract(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """Every benchmark metric of one run's summary (None where the run has no value)."""
    out: dict[str, float | None] = {}
    for name, c in summary["classes"].items():
        first, delta = c["first_sync"], c["delta_sync"]
        syncs = c["syncs"] - c.get("final_syncs", 0)
        out |= {f"{name}.first_sync_p50_s": first["p50"], f"{name}.first_sync_p95_s": first["p95"],
                f"{name}.first_sync_p99_s": first["p99"], f"{name}.delta_sync_p95_s": delta["p95"],
                f"{name}.conflict_rate": c["conflict_rate"], f"{name}.rejection_rate": c["rejection_rate"],
                f"{name}.failure_rate": round(c["failed"] / syncs, 4) if syncs else 0.0,
                f"{name}.unfinished_first_syncs": c["first_sync_detail"]["unfinished"]["count"]}
    virtual = summary.get("clock") == "virtual"
    server = summary.get("server", {})
    # rates per second of the run: its simulated seconds in virtual time, wall seconds in real time
    wall = (summary.get("run_s") if virtual else summary.get("wall_s")) or 0.0
    health = summary.get("generator", {})
    # virtual time: no loop lag or CPU to judge (the generator cannot lag simulated time); one
    # process holds devices and server, its peak memory is the devices' figure
    devices = {"peak_rss_mb": health.get("peak_rss_mb")} if virtual else health.get("devices_process", {})
    srv = {} if virtual else health.get("server_process", {})
    ledger = summary.get("ledger", {})
    out |= {
        "server_requests_per_s": round(server.get("requests", 0) / wall, 2) if wall else None,
        "server_rows_per_s": round(server.get("rows_served", 0) / wall, 2) if wall else None,
        "throttled_429s": sum(server.get("throttles", {}).values()),
        "throttle_rate": round(sum(server.get("throttles", {}).values()) / server["requests"], 4)
        if server.get("requests") else 0.0,
        "generator_loop_lag_p99_ms": devices.get("loop_lag_ms_p99"),
        "generator_cpu_p50": devices.get("cpu_p50"),
        "devices_peak_rss_mb": devices.get("peak_rss_mb"),
        "server_peak_rss_mb": srv.get("peak_rss_mb"),
        "ledger_violations": sum(r["violations"] for r in ledger.get("invariants", {}).values()),
    }
    return out
