"""Seed benchmark: build_store on one 1,000,000-row table of ~1 KB rows and 5,000 users: time and memory.

Run with `.venv/bin/python -m bench.seed_bench`, or as `python -m bench seed` (see `figures`). The
requirements: under 30 s on a 2-core machine, and the store in "a few GB" (peak RSS, target 4 GiB).
"""

from __future__ import annotations

import resource
import time
from typing import Any

from bench.common import Figure, absolute, visit_columns
from simulator.scenario import Scenario, parse_scenario
from simulator.server.seed import build_store

ROWS = 1_000_000
ROW_BYTES = 1000
USERS = 5000
TARGET_GIB = 4.0
NOW = 1_735_689_600.0  # 2025-01-01T00:00:00Z, scenario epoch seconds


def scenario(rows: int = ROWS, users: int = USERS) -> Scenario:
    """A benchmark scenario: a 200-row `account` table and a `rows`-row `visit` table pointing at it."""
    tables: list[dict[str, Any]] = [
        {
            "logical_name": "account",
            "rows": 200,
            "columns": [{"name": "city", "type": "text", "faker": "city"}],
        },
        {
            "logical_name": "visit",
            "rows": rows,
            "row_bytes": ROW_BYTES,
            "columns": [
                *visit_columns(),  # the plain columns every benchmark's visit table has, plus:
                {"name": "rate", "type": "decimal", "min": 10, "max": 200},
                {"name": "completed", "type": "datetime"},
                {"name": "priority", "type": "choice", "options": {"low": 10, "normal": 20, "high": 30}},
                {"name": "account", "type": "lookup", "target": "account", "fill": 0.95},
                {
                    "name": "photo",
                    "type": "file",
                    "size": {"median_kb": 300, "sigma": 1.0, "min_kb": 20, "max_kb": 8192},
                    "fill": 0.3,
                },
            ],
        },
    ]
    profile = [{"table": "account"}, {"table": "visit"}]
    return parse_scenario(
        {
            "name": "seed_bench",
            "seed": 42,
            "tables": tables,
            "user_classes": [{"name": "tech", "count": users, "teams": 10, "profile": profile}],
        }
    )


def run() -> dict[str, float]:
    """Time build_store on the benchmark scenario; returns rows, seconds and rows per second."""
    sc = scenario()
    start = time.perf_counter()
    store = build_store(sc, NOW)
    seconds = time.perf_counter() - start
    rows = float(len(store.table("visit")))
    rate = rows / seconds if seconds > 0 else float("inf")
    print(f"seed: {int(rows):,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)")
    return {"seed_rows": rows, "seed_seconds": seconds, "seed_rows_per_s": rate}


# --- `python -m bench` entry ---------------------------------------------------------------------
TARGET_S = 30.0  # for ROWS rows
QUICK_ROWS = 100_000


def figures(quick: bool = False) -> list[Figure]:
    """run() at full size; quick times a QUICK_ROWS table and projects to ROWS at the same rate
    (after a 1,000-row build, so Faker's start-up is not multiplied by the projection)."""
    if quick:
        build_store(scenario(rows=1_000), NOW)
        start = time.perf_counter()
        rows = float(len(build_store(scenario(rows=QUICK_ROWS), NOW).table("visit")))
        seconds = time.perf_counter() - start
        print(f"seed: {int(rows):,} rows in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")
        result = {"seed_rows": rows, "seed_seconds": seconds, "seed_rows_per_s": rows / seconds}
    else:
        result = run()
    projected = ROWS / result["seed_rows_per_s"]
    how = "projected from" if quick else "measured on"
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    return [absolute("seed", f"seed {ROWS:,} rows of ~1 KB", projected, "s", TARGET_S, at_most=True,
                     detail=f"{how} {int(result['seed_rows']):,} rows at {result['seed_rows_per_s']:,.0f} rows/s",
                     **result),
            absolute("seed", f"peak RSS with {int(result['seed_rows']):,} rows, {USERS:,} users", peak_gib, "GiB",
                     TARGET_GIB, at_most=True, detail="process peak after seeding (rows not yet JSON-encoded)")]


if __name__ == "__main__":
    run()
