"""`python -m bench virtual`: what a virtual-time run costs the machine.

- `cycle`: CPU of one empty DELTA_SYNC cycle (3 tables: 3 delta GETs) of the cycle benchmark's device,
  in virtual time through memory pipes, against the same device over loopback sockets measured in this
  run (`python -m bench cycle`'s figure): the ratio is virtual / sockets.
- `steady`: device-hours simulated per wall second on a field_service-like load: technicians on
  4g/3g/wifi syncing every 15 minutes (±20%), 12 offline edits an hour, the back office writing once
  a second, four hours (target 1,000); the run's own wall seconds (summary `wall_s`: from the run's
  start to the end of its quiet period, reports left out).
- `field_service`: `syncsim run scenarios/field_service.yaml` end to end in a child process
  (imports, seeding, run, reports; target 10 s).
- `rollout_monday`: the 1,000-device first-sync storm scenario at N devices (2,000; 200 with
  --quick; SYNCSIM_BENCH_ROLLOUT=N for another size), each size in a fresh process: wall seconds,
  first-sync p50/p95 and the peak memory per device, (peak RSS at N - peak RSS at N/10) / (0.9 N),
  target 300 KiB.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from rich.console import Console

from bench import cycle_bench
from bench.common import Figure, absolute, info
from bench.procs import run_in_child
from simulator.clock import VirtualClock, run_virtual
from simulator.events import Events
from simulator.fleet import build_fleet
from simulator.health import peak_rss_mb
from simulator.runner import Admin, make_device, run_scenario
from simulator.scenario import Scenario, load_scenario, parse_scenario
from simulator.server.serve import serve_app
from simulator.transport import MemoryTransport
from simulator.transport.memory import MEMORY_HOST

NAME = "virtual"
ROOT = Path(__file__).resolve().parent.parent


async def _cycle_virtual(cfg: cycle_bench.Config) -> list[Figure]:
    scenario = cycle_bench.cycle_scenario()
    clock = VirtualClock()
    runner = await serve_app(scenario, clock, cycle_bench.ADMIN_KEY)
    base = f"http://{MEMORY_HOST}"
    assert runner.server is not None
    try:
        async with MemoryTransport(runner.server).session(limit=0, keepalive_s=15, device=True) as session:
            entry = build_fleet(scenario)[0]
            device = make_device(entry, clock, session, Admin(session, base, cycle_bench.ADMIN_KEY), base, Events(),
                                 clock.now())
            first = await device.sync_once()
            if first.result != "success":
                raise RuntimeError(f"first sync failed: {first.error_code}")
            return await cycle_bench.measure(device, cfg, 0, "DELTA_SYNC, no changes (virtual time, memory pipes)")
    finally:
        await runner.cleanup()


def cycle(quick: bool) -> list[Figure]:
    cfg = cycle_bench.QUICK if quick else cycle_bench.FULL
    (virtual,) = run_virtual(_cycle_virtual(cfg))
    sockets = asyncio.run(cycle_bench.run_async(cfg))[0]
    ratio = virtual.value / sockets.value
    return [info(NAME, "CPU per empty delta cycle, virtual time", virtual.value, "µs CPU/cycle",
                 detail=f"{ratio:.2f}x the same cycle over loopback sockets on a manual clock measured in this run "
                        f"({sockets.value:,.0f} µs; `python -m bench cycle`); " + virtual.detail,
                 sockets_us=sockets.value, ratio=ratio)]


def steady_scenario(devices: int, hours: float) -> Scenario:
    """field_service's technicians in steady state: a small profile, 15-minute delta syncs, edits,
    the back office writing once a second."""
    return parse_scenario({
        "name": "bench_steady", "seed": 7, "duration_s": hours * 3600, "quiet_period_s": 1800,
        "tables": [
            {"logical_name": "account", "rows": 500, "row_bytes": 800,
             "columns": [{"name": "revenue", "type": "decimal", "min": 0, "max": 100000}]},
            {"logical_name": "msdyn_workorder", "rows": 100 * devices, "row_bytes": 1000, "owned_by": ["technician"],
             "columns": [{"name": "msdyn_priority", "type": "choice", "options": {"Low": 1, "Normal": 2, "High": 3}},
                         {"name": "msdyn_estimatedduration", "type": "integer", "min": 15, "max": 480}]},
        ],
        "user_classes": [{
            "name": "technician", "count": devices, "networks": {"4g": 0.6, "3g": 0.3, "wifi": 0.1},
            "profile": [{"table": "account"}, {"table": "msdyn_workorder", "filter": "owner"}],
            "behaviour": {"sync_interval_s": 900, "sync_jitter": 0.2, "edits_per_hour": 12,
                          "edit_tables": ["msdyn_workorder"]},
        }],
        "back_office": {"writes_per_s": 1.0, "tables": ["msdyn_workorder", "account"]},
    })


def steady(quick: bool) -> list[Figure]:
    devices, hours = (50, 2.0) if quick else (200, 4.0)
    with TemporaryDirectory() as out:
        summary = run_virtual(run_scenario(steady_scenario(devices, hours), Path(out), progress=False,
                                           console=Console(quiet=True), report=False)).summary
    wall = summary["wall_s"]
    rate = devices * hours / wall
    rows, syncs = summary["totals"]["rows"], summary["totals"]["syncs"]
    return [absolute(NAME, "device-hours simulated per wall second (steady state)", rate, "device-h/s", 1000.0,
                     detail=f"{devices} devices x {hours:g} h in {wall:.1f} s of wall time (the run, from its start to "
                            f"the end of its quiet period); {syncs:,} syncs ({wall / syncs * 1e3:.2f} ms each), "
                            f"{summary['server']['requests']:,} requests, {rows:,} rows delivered "
                            f"({rows / (devices * hours):,.0f} per device-hour, {wall / rows * 1e6:.1f} µs of wall "
                            "each): every back-office write reaches every device that holds its row",
                     devices=devices, hours=hours, wall_s=wall, rows=rows, syncs=syncs)]


def field_service(quick: bool) -> list[Figure]:
    name = "smoke" if quick else "field_service"
    with TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(ROOT / "scenarios" / f"{name}.yaml"),
                               "--out", out, "--no-progress"], capture_output=True, cwd=ROOT, timeout=900)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"syncsim run {name} exited {done.returncode}: {done.stderr.decode()[-1000:]}")
    return [absolute(NAME, f"`syncsim run scenarios/{name}.yaml`, end to end", wall, "s", 10.0, at_most=True,
                     detail="a child process: imports, seeding, the run, its check and ledger, every report file")]


async def _rollout(devices: int) -> dict[str, Any]:
    scenario = load_scenario(ROOT / "scenarios" / "rollout_monday.yaml", devices=devices)
    start = time.perf_counter()
    with TemporaryDirectory() as out:
        result = await run_scenario(scenario, Path(out), progress=False, console=Console(quiet=True), report=False)
    first = result.summary["classes"]["technician"]["first_sync"]
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "p50": first["p50"],
            "p95": first["p95"], "passed": result.passed}


async def _rollout_virtual(devices: int) -> dict[str, Any]:
    """`_rollout` on a virtual loop, from the child's own asyncio.run (run_in_child's contract)."""
    return await asyncio.to_thread(run_virtual, _rollout(devices))


def rollout(quick: bool) -> list[Figure]:
    devices = int(os.environ.get("SYNCSIM_BENCH_ROLLOUT", 200 if quick else 2000))
    small = max(1, devices // 10)
    base = run_in_child(_rollout_virtual, (small,), "bench-rollout-small", 3600)
    big = run_in_child(_rollout_virtual, (devices,), "bench-rollout", 3 * 3600)
    per_device_kib = (big["peak_rss_mb"] - base["peak_rss_mb"]) * 1024 / (devices - small)
    return [
        info(NAME, f"rollout_monday at {devices:,} devices: wall", big["wall_s"], "s",
             detail=f"first sync p50 {big['p50']:.1f} s, p95 {big['p95']:.1f} s (set by the server model and the "
                    f"network); check and ledger {'passed' if big['passed'] else 'FAILED'}; at {small:,} devices "
                    f"{base['wall_s']:.1f} s", **big),
        absolute(NAME, f"rollout_monday at {devices:,} devices: peak memory per device", per_device_kib, "KiB",
                 300.0, at_most=True,
                 detail=f"peak RSS {big['peak_rss_mb']:,.0f} MiB at {devices:,} devices, {base['peak_rss_mb']:,.0f} MiB "
                        f"at {small:,}: devices, server and records in one process"),
    ]


def figures(quick: bool) -> list[Figure]:
    return [*cycle(quick), *steady(quick), *field_service(quick), *rollout(quick)]
