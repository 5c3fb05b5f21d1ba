"""Device connection pools (issue #15): what each device's own aiohttp pool costs, in memory and in
file descriptors, and so how many devices one process can sync at once within its open-file limit.

The same fleet runs twice, each time in a fresh spawned process of its own against the server in
another process (start_server_process, loopback): once with every device on its own pool, as
`syncsim run` gives them (SocketTransport.session, the pool FleetRun.device_pool builds), once with all
devices on ONE shared session (same socket factory, read buffer and keep-alive). Each device makes
its first sync of a small profile (PROFILE_ROWS rows), the fleet in waves of WAVE devices at a time
(both runs alike), and keeps its connection alive afterwards (KEEPALIVE_REAL_S: longer than the
run). After a warm-up device and gc.collect(), the process reads its resident set (VmRSS,
/proc/self/status) and its open file descriptors (/proc/self/fd) before the devices are built and
again once all have synced, connections still kept alive.

- memory per device pool: RSS growth of the own-pools run minus that of the shared run, per
  device; the devices, their stores and the syncs themselves cost the same in both and cancel, so
  what is left is a session, a connector and a kept-alive connection per device, less the few
  connections the shared session keeps (about WAVE). The sockets' kernel buffers are not in the RSS.
- file descriptors per syncing device: descriptors the own-pools run holds after the syncs over
  before, per device (one kept-alive connection each: a device syncs one request at a time).
- devices that can sync at once in one process: (open-file limit after raise_fd_limit() -
  FD_RESERVE) / file descriptors per device.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.common import Figure, info, visits_scenario
from bench.memory_bench import proc_status
from bench.procs import run_in_child
from simulator.clock import RealClock
from simulator.events import Events
from simulator.fleet import build_fleet
from simulator.runner import DEVICE_CONNECTIONS, Admin, make_device, raise_fd_limit
from simulator.server.process import start_server_process
from simulator.transport import SocketTransport
from simulator.transport.sockets import DEVICE_READ_BUFFER, device_socket

NAME = "pools"
PROFILE_ROWS = 10  # rows of each device's first sync
WAVE = 20  # devices syncing at the same time
KEEPALIVE_REAL_S = 600.0  # every connection outlives the run (the server's own keep-alive is 75 s)
FD_RESERVE = 256  # descriptors a device process keeps for itself, as FleetRun's shared connector leaves
SYNC_TIMEOUT_S = 60.0  # one wave; a normal wave takes well under a second
PROCESS_TIMEOUT_S = 180.0  # one fleet process: server start, warm-up, syncs, readings


@dataclass(frozen=True, slots=True)
class Config:
    devices: int
    rounds: int  # pairs of runs (own pools, shared session), alternating which goes first


FULL = Config(devices=500, rounds=2)
QUICK = Config(devices=50, rounds=1)


def open_fds() -> int:
    """File descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


async def fleet_sync(devices: int, own: bool) -> dict[str, Any]:
    """In this process: `devices` devices first-sync against a server process, each on its own pool
    (own) or all on one shared session; readings before the devices and after their syncs."""
    scenario = visits_scenario("bench_pools", rows=PROFILE_ROWS, users=devices + 1)  # +1: the warm-up
    fd_limit = raise_fd_limit()
    if devices + FD_RESERVE > fd_limit:
        raise RuntimeError(f"{devices} devices need one connection each; the open-file limit is {fd_limit}")
    server = await asyncio.to_thread(start_server_process, scenario)
    try:
        connector = aiohttp.TCPConnector(limit=max(64, fd_limit - FD_RESERVE), socket_factory=device_socket,
                                         keepalive_timeout=KEEPALIVE_REAL_S)
        # Tokens come through the admin session, one connection at a time: its connections are not
        # the devices' pools (in `syncsim run` it is the run's shared session, idle ones closed after 15 s).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as admin_session, \
                aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                read_bufsize=DEVICE_READ_BUFFER) as shared:
            admin = Admin(admin_session, server.base_url, server.admin_key)
            pool = functools.partial(SocketTransport().session, limit=DEVICE_CONNECTIONS, keepalive_s=KEEPALIVE_REAL_S,
                                     device=True) if own else shared
            fleet, clock, events = build_fleet(scenario), RealClock(1.0), Events()
            origin = clock.now()
            warm = make_device(fleet[0], clock, pool, admin, server.base_url, events, origin)
            record = await warm.sync_once()  # imports, caches, a pool, before the baseline
            if record.result != "success":
                raise RuntimeError(f"the warm-up first sync failed: {record.error_code}")
            del record
            gc.collect()
            fds0, rss0 = open_fds(), proc_status()["VmRSS"]
            fleet_devices = [make_device(e, clock, pool, admin, server.base_url, events, origin) for e in fleet[1:]]
            start = time.perf_counter()
            for i in range(0, devices, WAVE):
                async with asyncio.timeout(SYNC_TIMEOUT_S):
                    records = await asyncio.gather(*(d.sync_once() for d in fleet_devices[i:i + WAVE]))
                failed = [r for r in records if r.result != "success"]
                if failed:
                    raise RuntimeError(f"{len(failed)} first syncs failed, e.g. {failed[0].error_code}")
            seconds = time.perf_counter() - start
            del records
            gc.collect()
            fds1, rss1 = open_fds(), proc_status()["VmRSS"]
            rows = sum(d.store.row_count() for d in fleet_devices)
            await asyncio.gather(*(d.link.close() for d in [warm, *fleet_devices]))
    finally:
        await asyncio.to_thread(server.close)
    if rows != devices * PROFILE_ROWS:
        raise RuntimeError(f"the devices hold {rows} rows, not {devices} x {PROFILE_ROWS}")
    return {"devices": devices, "own": own, "fd_limit": fd_limit, "fds_before": fds0, "fds_after": fds1,
            "rss_before": rss0, "rss_after": rss1, "seconds": seconds}


def in_child(devices: int, own: bool) -> dict[str, Any]:
    """`fleet_sync` in a fresh spawned process (which starts the server process itself)."""
    return run_in_child(fleet_sync, (devices, own), "bench-pools-fleet", PROCESS_TIMEOUT_S)


def figures(quick: bool = False) -> list[Figure]:
    cfg = QUICK if quick else FULL
    n = cfg.devices
    owns: list[dict[str, Any]] = []
    shareds: list[dict[str, Any]] = []
    for i in range(cfg.rounds):
        for own in ((True, False) if i % 2 == 0 else (False, True)):
            (owns if own else shareds).append(in_child(n, own))

    def growth_kib(m: dict[str, Any]) -> float:
        return (m["rss_after"] - m["rss_before"]) / n / 1024

    def fds(m: dict[str, Any]) -> float:
        return (m["fds_after"] - m["fds_before"]) / n

    extra = [growth_kib(o) - growth_kib(s) for o, s in zip(owns, shareds, strict=True)]
    kib = statistics.median(extra)
    per_device = statistics.median(fds(o) for o in owns)
    fd_limit = owns[0]["fd_limit"]
    at_once = (fd_limit - FD_RESERVE) / per_device if per_device > 0 else float("inf")
    slowest = max(m["seconds"] for m in [*owns, *shareds])
    rounds = f"median of {cfg.rounds} rounds ({' '.join(f'{x:.1f}' for x in extra)} KiB)" if cfg.rounds > 1 \
        else "one round"
    return [
        info(NAME, "memory per device pool", kib, "KiB",
             detail=f"{n:,} devices each first-syncing {PROFILE_ROWS} rows on loopback, {WAVE} at a time, "
                    f"connections kept alive; RSS growth of the devices' process with a pool per device "
                    f"({statistics.median(growth_kib(o) for o in owns):.1f} KiB per device) minus with one "
                    f"shared session ({statistics.median(growth_kib(s) for s in shareds):.1f} KiB), each in a "
                    f"fresh process; {rounds}; sockets' kernel buffers not included",
             per_round=extra, own=owns, shared=shareds),
        info(NAME, "file descriptors per syncing device", per_device, "fds",
             detail=f"open descriptors of the devices' process after the syncs over before, per device, "
                    f"connections kept alive; tokens through an admin session of one connection, in the "
                    f"baseline (one shared session: "
                    f"{statistics.median(fds(s) for s in shareds):.3f} per device); slowest fleet's syncs "
                    f"{slowest:.1f} s", fds_shared=[fds(s) for s in shareds]),
        info(NAME, "devices that can sync at once in one process", at_once, "devices",
             detail=f"(open-file limit {fd_limit:,} after raise_fd_limit() - {FD_RESERVE} kept for the process) "
                    f"/ {per_device:.3f} fds per device; a device with requests in parallel holds up to one "
                    f"connection each (at most {DEVICE_CONNECTIONS}, its pool's limit)", fd_limit=fd_limit,
             reserve=FD_RESERVE),
    ]
