"""Idle device memory: KiB per Device, built the way the runner builds them, measured with tracemalloc.

Idle: `make_device` for every entry of a fleet (shared session, one Events, as `syncsim run` does),
tracemalloc's traced memory before and after, divided by the count. After a first sync: devices of a
small profile (10 rows each) first-sync against a server in a child process (so no server memory is
traced here); the per-device figure is the slope between two fleet sizes, which leaves out what
every fleet shares once (connection pool, caches).
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from dataclasses import dataclass

import aiohttp

from bench.common import Figure, absolute, visits_scenario
from bench.procs import ChildServer
from simulator.clock import RealClock
from simulator.device.device import Device
from simulator.events import Events
from simulator.fleet import FleetEntry, build_fleet
from simulator.runner import Admin, make_device

NAME = "memory"
TARGET_KIB = 50.0
PROFILE_ROWS = 10
SYNC_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Config:
    idle: int  # devices built for the idle figure
    synced: tuple[int, int]  # two fleet sizes for the after-first-sync slope


FULL = Config(idle=10_000, synced=(500, 1_000))
QUICK = Config(idle=1_000, synced=(50, 100))


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def build(entries: list[FleetEntry], session: aiohttp.ClientSession, admin: Admin, base_url: str) -> list[Device]:
    clock, events = RealClock(1.0), Events()
    origin = clock.now()
    return [make_device(e, clock, session, admin, base_url, events, origin) for e in entries]


async def idle(n: int) -> tuple[float, float]:
    """(KiB per idle device, KiB per fleet entry) for n devices."""
    scenario = visits_scenario("bench_memory", rows=PROFILE_ROWS, users=n)
    async with aiohttp.ClientSession() as session:
        admin = Admin(session, "http://127.0.0.1:9", "unused")
        tracemalloc.start()
        try:
            t0 = traced_now()
            fleet = build_fleet(scenario)
            t1 = traced_now()
            devices = build(fleet, session, admin, "http://127.0.0.1:9")
            t2 = traced_now()
        finally:
            tracemalloc.stop()
        assert len(devices) == n
    return (t2 - t1) / n / 1024, (t1 - t0) / n / 1024


async def synced(n: int, fleet: list[FleetEntry], session: aiohttp.ClientSession, admin: Admin,
                 base_url: str) -> int:
    """Traced bytes held after n devices built and first-synced (tracemalloc must be running)."""
    before = traced_now()
    devices = build(fleet[:n], session, admin, base_url)
    async with asyncio.timeout(SYNC_TIMEOUT_S):
        records = await asyncio.gather(*(d.sync_once() for d in devices))
    bad = [r for r in records if r.result != "success" or sum(r.rows_by_table.values()) != PROFILE_ROWS]
    if bad:
        raise RuntimeError(f"{len(bad)} first syncs failed or incomplete, e.g. {bad[0]}")
    del records
    held = traced_now() - before
    del devices
    return held


async def run_async(cfg: Config) -> list[Figure]:
    start = time.perf_counter()
    idle_kib, entry_kib = await idle(cfg.idle)
    idle_s = time.perf_counter() - start
    small, large = cfg.synced
    scenario = visits_scenario("bench_memory", rows=PROFILE_ROWS, users=large)
    async with ChildServer("syncsim", scenario) as server, aiohttp.ClientSession() as session:
        admin = Admin(session, server.base_url, server.admin_key)
        fleet = build_fleet(scenario)
        await synced(min(small, 20), fleet, session, admin, server.base_url)  # warm the pool and caches
        tracemalloc.start()
        try:
            held_small = await synced(small, fleet, session, admin, server.base_url)
            held_large = await synced(large, fleet, session, admin, server.base_url)
        finally:
            tracemalloc.stop()
    slope = (held_large - held_small) / (large - small) / 1024
    return [
        absolute(NAME, "idle device", idle_kib, "KiB", TARGET_KIB, at_most=True,
                 detail=f"{cfg.idle:,} devices from make_device ({idle_s:.1f} s); "
                        f"each fleet entry adds {entry_kib:.2f} KiB", fleet_entry_kib=entry_kib),
        absolute(NAME, f"device after a {PROFILE_ROWS}-row first sync", slope, "KiB", TARGET_KIB, at_most=True,
                 detail=f"slope between {small:,} and {large:,} devices; total / {large:,} = "
                        f"{held_large / large / 1024:.1f} KiB", held_small=held_small, held_large=held_large),
    ]


def figures(quick: bool = False) -> list[Figure]:
    return asyncio.run(run_async(QUICK if quick else FULL))
