"""`python -m bench [NAME...] [--quick]`: run the benchmarks, print their figures as a table, and write
them to reports/bench-<UTC timestamp>.json.

Speed is printed, never asserted: the exit status is 1 only when a benchmark crashed, not when a
figure is below its target. Every comparison is a ratio measured in the same run (see
bench/common.py). --quick runs a smaller version of each benchmark, to smoke-test them.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import (
    agreement_bench,
    cycle_bench,
    delta_bench,
    devices_bench,
    locust_bench,
    memory_bench,
    pages_bench,
    pools_bench,
    seed_bench,
    servermodel_bench,
    virtual_bench,
)
from bench.common import Figure, fmt

BENCHES: dict[str, tuple[str, Callable[[bool], list[Figure]]]] = {
    "seed": ("1,000,000 seeded rows, target < 30 s", seed_bench.figures),
    "pages": ("tracked first-sync pages vs bare aiohttp, target >= 50%", pages_bench.figures),
    "delta": ("empty delta request rate vs bare hello world, target >= 60%", delta_bench.figures),
    "devices": ("device first sync end to end, targets >= 100,000 rows/s and >= 40% of bare",
                devices_bench.figures),
    "memory": ("idle device memory (target <= 50 KiB) and peak per device holding 1,000 rows in a fleet-wide first sync (target <= 300 KiB)", memory_bench.figures),
    "pools": ("memory and file descriptors of each device's own connection pool (no target)", pools_bench.figures),
    "cycle": ("engine CPU per delta sync cycle (no target)", cycle_bench.figures),
    "locust": ("sync rate through Locust vs syncsim run, target >= 80%", locust_bench.figures),
    "virtual": ("virtual time: CPU per delta cycle, device-hours per wall second (target 1,000), field_service end "
                "to end (target 10 s), rollout_monday's memory per device (target 300 KiB)", virtual_bench.figures),
    "agreement": ("first-sync p50/p95 per class, virtual time against real time, target within 10%",
                  agreement_bench.figures),
    "servermodel": ("the server model's defaults fitted to the mock server's measured request times (no target)",
                    servermodel_bench.figures),
}
REPORTS = Path("reports")


def parse(argv: list[str] | None) -> argparse.Namespace:
    lines = "\n".join(f"  {name:<8} {what}" for name, (what, _) in BENCHES.items())
    parser = argparse.ArgumentParser(prog="python -m bench", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Run syncsim's benchmarks.", epilog=f"benchmarks:\n{lines}")
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller versions, to smoke-test the benchmarks")
    parser.add_argument("--out", type=Path, default=REPORTS, help="directory for the JSON figures (reports/)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    return args


def run_one(name: str, quick: bool) -> tuple[list[Figure], float]:
    """One benchmark's figures and its real seconds; a crash becomes an ERROR figure."""
    print(f"== {name}{' (quick)' if quick else ''}: {BENCHES[name][0]}", flush=True)
    start = time.perf_counter()
    try:
        figures = BENCHES[name][1](quick)
    except Exception as exc:
        traceback.print_exc()
        figures = [Figure(name, "crashed", float("nan"), "", "-", None, False, f"{type(exc).__name__}: {exc}",
                          {"error": True})]
    seconds = time.perf_counter() - start
    for f in figures:
        print(f"   {f.name}: {fmt(f.value)} {f.unit}  [{f.verdict}]", flush=True)
    print(f"   ({seconds:.1f} s)", flush=True)
    gc.collect()
    return figures, seconds


def table(figures: list[Figure]) -> str:
    """The final table, then one note per figure with how it was measured."""
    head = ("benchmark", "figure", "target", "ratio", "result")
    rows = [(f"{f.bench}: {f.name}", f"{fmt(f.value)} {f.unit}", f.target,
             "-" if f.ratio is None else f"{f.ratio:.2f}", f.verdict if not f.data.get("error") else "ERROR")
            for f in figures]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out += [line, "ratio: syncsim / bare aiohttp for comparisons (median of interleaved rounds), "
                  "figure / target otherwise; PASS when on the right side of the target.", "", "notes:"]
    out += [f"  {f.bench}: {f.name}: {f.detail}" for f in figures if f.detail]
    return "\n".join(out)


def write_json(out_dir: Path, figures: list[Figure], seconds: dict[str, float], quick: bool, started: datetime) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{started.strftime('%Y%m%d-%H%M%S')}{'-quick' if quick else ''}.json"
    doc = {
        "started": started.isoformat(), "quick": quick, "seconds": seconds,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 "load_average_at_end": list(os.getloadavg())},
        "figures": [{**asdict(f), "verdict": f.verdict} for f in figures],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = args.names or list(BENCHES)
    started = datetime.now(UTC)
    print(f"python -m bench {' '.join(names)}{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    for name in names:
        got, seconds[name] = run_one(name, args.quick)
        figures += got
    print(f"\n{table(figures)}\n")
    path = write_json(args.out, figures, seconds, args.quick, started)
    print(f"{sum(seconds.values()):.0f} s in all; load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; figures written to {path}")
    return 1 if any(f.data.get("error") for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
