"""Engine cost per sync cycle: CPU time of one DELTA_SYNC, with no changes and with a few edits.

One device (built with the runner's `make_device`) against the in-process server on a ManualClock,
so no time passes while idle and the figure is pure CPU (time.process_time) of client and server
together. After the first sync, `cycles` delta syncs run back to back; the second variant makes
`edits` offline edits before each sync (uploaded as one $batch, then seen again in the delta). No
target: these are figures to watch. A shorter profiled run splits the CPU into client (the device's
task and its response parsing), server (aiohttp's request tasks and request parsing) and the rest
(event loop, transport); cProfile slows Python code more than C code, so the split is approximate.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import NO_LIMITS, Figure, info
from simulator.clock import ManualClock
from simulator.device.device import Device
from simulator.events import Events
from simulator.fleet import build_fleet
from simulator.runner import Admin, make_device
from simulator.scenario import Scenario, parse_scenario
from simulator.server.app import make_app
from simulator.server.seed import build_store

NAME = "cycle"
ADMIN_KEY = "bench"


@dataclass(frozen=True, slots=True)
class Config:
    cycles: int
    profiled: int  # cycles run under cProfile for the client / server split
    edits: int
    budget_s: float  # real seconds per timed loop


FULL = Config(cycles=500, profiled=150, edits=5, budget_s=60)
QUICK = Config(cycles=50, profiled=20, edits=5, budget_s=15)

# Function (file suffix, name) whose cumulative time is one side's CPU.
CLIENT = [("simulator/device/device.py", "sync_once"), ("simulator/device/device.py", "edit"),
          ("aiohttp/client_proto.py", "data_received")]
SERVER = [("aiohttp/web_protocol.py", "start"), ("aiohttp/web_protocol.py", "_handle_request"),
          ("aiohttp/web_protocol.py", "data_received")]


def cycle_scenario() -> Scenario:
    """Three profile tables as in the smoke scenario (all, owner, related), no files."""
    return parse_scenario({
        "name": "bench_cycle", "seed": 42, "server": NO_LIMITS,
        "tables": [
            {"logical_name": "account", "rows": 200, "row_bytes": 600, "columns": [
                {"name": "revenue", "type": "decimal", "min": 0, "max": 100000}]},
            {"logical_name": "msdyn_workorder", "rows": 2000, "row_bytes": 900, "owned_by": ["technician"],
             "columns": [
                 {"name": "msdyn_priority", "type": "choice", "options": {"Low": 1, "Normal": 2, "High": 3}},
                 {"name": "msdyn_estimatedduration", "type": "integer", "min": 15, "max": 480},
                 {"name": "msdyn_account", "type": "lookup", "target": "account"}]},
            {"logical_name": "annotation", "entity_set": "annotations", "rows": 2000, "row_bytes": 500,
             "columns": [{"name": "objectid", "type": "lookup", "target": "msdyn_workorder"}]},
        ],
        "user_classes": [{
            "name": "technician", "count": 10, "networks": {"loopback": 1.0},
            "privileges": {"msdyn_workorder": {"read": "org", "write": "org", "delete": "org"}},
            "behaviour": {"edit_tables": ["msdyn_workorder"]},
            "profile": [{"table": "account"}, {"table": "msdyn_workorder", "filter": "owner"},
                        {"table": "annotation", "filter": "related", "related_table": "msdyn_workorder",
                         "via": "objectid"}],
        }],
    })


async def cycles(device: Device, n: int, edits: int, budget_s: float) -> tuple[int, float, float]:
    """Up to n delta syncs (stopping at budget_s real seconds); (cycles done, CPU s, wall s)."""
    deadline = time.monotonic() + budget_s
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = 0
    while done < n and time.monotonic() < deadline:
        for _ in range(edits):
            device.edit()
        record = await device.sync_once()
        if record.result != "success" or record.mode != "DELTA_SYNC":
            raise RuntimeError(f"cycle {done}: {record.mode} {record.result} {record.error_code}")
        done += 1
    return done, time.process_time() - cpu0, time.perf_counter() - wall0


def split(stats: pstats.Stats) -> dict[str, float]:
    """Shares of profiled time: client, server, other."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0

    def cum(sides: list[tuple[str, str]]) -> float:
        return sum(v[3] for (file, _, fn), v in raw.items() if any(file.endswith(f) and fn == n for f, n in sides))

    client, server = cum(CLIENT) / total, cum(SERVER) / total
    return {"client": client, "server": server, "other": max(0.0, 1 - client - server)}


def hotspots(stats: pstats.Stats, top: int = 8) -> list[str]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [f"{v[2] / total:5.1%} {file.rsplit('/', 2)[-1] if '/' in file else file}:{line} {fn}"
            for (file, line, fn), v in rows]


async def measure(device: Device, cfg: Config, edits: int, label: str) -> list[Figure]:
    await cycles(device, 10, edits, cfg.budget_s)  # warm caches and connections
    done, cpu_s, wall_s = await cycles(device, cfg.cycles, edits, cfg.budget_s)
    profile = cProfile.Profile()
    profile.enable()
    await cycles(device, cfg.profiled, edits, cfg.budget_s)
    profile.disable()
    stats = pstats.Stats(profile)
    shares = split(stats)
    per_us = cpu_s / done * 1e6
    parts = ", ".join(f"{k} ~{v * per_us:,.0f} µs ({v:.0%})" for k, v in shares.items())
    spots = hotspots(stats)
    return [info(NAME, label, per_us, "µs CPU/cycle",
                 detail=f"{done} cycles, {wall_s / done * 1e6:,.0f} µs wall each; split (cProfile): {parts}; "
                        f"top self time: " + "; ".join(s.strip() for s in spots[:4]),
                 cycles=done, cpu_s=cpu_s, wall_s=wall_s, shares=shares, hotspots=spots)]


async def run_async(cfg: Config) -> list[Figure]:
    scenario = cycle_scenario()
    clock = ManualClock()
    app = make_app(scenario, build_store(scenario, clock.now()), clock, admin_key=ADMIN_KEY)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            entry = build_fleet(scenario)[0]
            device = make_device(entry, clock, session, Admin(session, base, ADMIN_KEY), base, Events(), clock.now())
            first = await device.sync_once()
            if first.result != "success":
                raise RuntimeError(f"first sync failed: {first.error_code}")
            held = sum(len(rows) for rows in device.store.tables.values())
            figures = await measure(device, cfg, 0, "DELTA_SYNC, no changes")
            figures += await measure(device, cfg, cfg.edits, f"DELTA_SYNC after {cfg.edits} edits")
    finally:
        await runner.cleanup()
    figures[0].detail = f"device holds {held:,} rows in 3 tables (3 delta GETs per cycle); " + figures[0].detail
    return figures


def figures(quick: bool = False) -> list[Figure]:
    return asyncio.run(run_async(QUICK if quick else FULL))
