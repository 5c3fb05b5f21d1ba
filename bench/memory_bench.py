"""Device memory: KiB per Device idle, after a small first sync, and at the peak of a fleet-wide
first sync of devices holding 1,000 rows each.

Idle: `make_device` for every entry of a fleet (shared session, one Events, as `syncsim run` does),
tracemalloc's traced memory before and after, divided by the count. After a first sync: devices of a
small profile (10 rows each) first-sync against a server in a child process (so no server memory is
traced here); the per-device figure is the slope between two fleet sizes, which leaves out what
every fleet shares once (connection pool, caches).

Fleet first sync (issue #12: 20,000 devices holding ~1,000 rows on one 24 GB machine needs at most
300 KiB per device): rollout_monday with `fleet` technicians, each holding 900 accounts and ~100 of
its own ~1 KB work orders (1,000 rows on average), loopback network, all first-syncing at once
against the server in another process. The devices run in a fresh process of their own (spawned, so
no earlier benchmark's heap is in it); it reads its resident set (VmRSS, /proc/self/status) after a
warm-up device and gc.collect(), resets its high-water mark (clear_refs 5), and reads VmHWM after
the sync: the growth divided by the devices is the figure. RSS, not tracemalloc, because a machine
has to provide resident pages, allocator overhead and fragmentation included (tracemalloc sees only
Python's heap, and tracing inflates the RSS, so it runs in a process of its own and is reported
beside). Devices are built after the baseline (so they count) and Metrics and the Journal listen as
in `syncsim run`; the fleet entries are built before it (the idle figure counts them).

On loopback the server serves pages faster than devices download them on any real network, so how
many devices hold a page at one moment depends on the server's pace and the fleet size. At 20,000
devices on phone networks every device is mid-download at once; the figure reproduces that with a
gate (an aiohttp TraceConfig on the devices' session): a device whose data page's headers are in
waits, with its body streaming in behind into the connection's buffers, until every device of the
fleet is at its own page of that round (or GATE_TIMEOUT_S passed); then each parses its page as it
reads it (device/pages.py). The devices' session has the connection settings of `syncsim run`
(runner.DEVICE_READ_BUFFER, device_socket). The same fleet without the gate is reported beside,
without a target.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench.common import API, NO_LIMITS, Figure, absolute, info, visits_scenario
from bench.procs import ChildServer, run_in_child
from simulator.clock import RealClock
from simulator.device.device import Device
from simulator.events import Events
from simulator.fleet import FleetEntry, build_fleet
from simulator.ledger import Journal
from simulator.metrics import Metrics
from simulator.runner import Admin, make_device, raise_fd_limit
from simulator.scenario import Scenario, parse_scenario
from simulator.server.process import start_server_process
from simulator.transport.sockets import DEVICE_READ_BUFFER, device_socket
from simulator.yaml_file import read_yaml

NAME = "memory"
TARGET_KIB = 50.0
PROFILE_ROWS = 10
SYNC_TIMEOUT_S = 120.0

FLEET_TARGET_KIB = 300.0  # issue #12: 20,000 devices holding 1,000 rows each in one 24 GB machine
FLEET_ACCOUNTS = 900  # every technician's profile takes all accounts...
FLEET_ORDERS_EACH = 100  # ...and its own work orders: 1,000 rows per device on average
ROLLOUT_MONDAY = Path(__file__).resolve().parent.parent / "scenarios" / "rollout_monday.yaml"
GATE_TIMEOUT_S = 20.0  # a gate round waiting longer than this lets its devices go (said in the detail)
FLEET_SYNC_TIMEOUT_S = 60.0  # a normal run takes under 10 s
FLEET_PROCESS_TIMEOUT_S = 120.0  # the whole fleet process: server start, warm-up, sync, readings


@dataclass(frozen=True, slots=True)
class Config:
    idle: int  # devices built for the idle figure
    synced: tuple[int, int]  # two fleet sizes for the after-first-sync slope
    fleet: int  # devices of the fleet-wide first sync of 1,000 rows each


FULL = Config(idle=10_000, synced=(500, 1_000), fleet=200)
QUICK = Config(idle=1_000, synced=(50, 100), fleet=50)


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


# --- fleet-wide first sync of 1,000 rows per device, in a process of its own ---------------------
def fleet_scenario(devices: int) -> Scenario:
    """rollout_monday with `devices` technicians on loopback, each holding 900 accounts and ~100 work
    orders (100 per technician, owners drawn at random by the seed); no service protection limits."""
    data = read_yaml(ROLLOUT_MONDAY)
    for table in data["tables"]:
        if table["logical_name"] == "account":
            table["rows"] = FLEET_ACCOUNTS
        elif table["logical_name"] == "msdyn_workorder":
            table["rows"] = FLEET_ORDERS_EACH * devices
    (tech,) = data["user_classes"]
    tech.update(count=devices, networks={"loopback": 1.0})
    data.update(name="bench_memory_fleet", server=NO_LIMITS, max_devices=max(devices, data.get("max_devices", 0)))
    return parse_scenario(data, ROLLOUT_MONDAY)


class Gate:
    """Holds every device at the start of each data page's body until all `parties` devices are at
    theirs (one round per page), so every device of the fleet is mid-download at the same moment."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.waiting = 0
        self.rounds = 0  # rounds released by the last device arriving
        self.timeouts = 0  # rounds released by GATE_TIMEOUT_S
        self._open = asyncio.Event()

    def _release(self) -> None:
        self._open.set()
        self._open, self.waiting = asyncio.Event(), 0

    async def arrive(self) -> None:
        event = self._open
        self.waiting += 1
        if self.waiting >= self.parties:
            self.rounds += 1
            self._release()
            return
        try:
            async with asyncio.timeout(GATE_TIMEOUT_S):
                await event.wait()
        except TimeoutError:
            if event is self._open:
                self.timeouts += 1
                self._release()

    def trace_config(self) -> aiohttp.TraceConfig:
        """aiohttp calls on_request_end once a response's headers are in, before its body is read:
        the device waits there with its page streaming in behind (as much as the connection's read
        buffer takes), then parses it as it reads (device/pages.py)."""

        async def started(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                          params: aiohttp.TraceRequestEndParams) -> None:
            path = params.url.path
            if params.method == "GET" and path.startswith(API) and "EntityDefinitions" not in path:
                await self.arrive()

        config = aiohttp.TraceConfig()
        config.on_request_end.append(started)
        return config


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current VmRSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def fleet_first_sync(devices: int, gated: bool, traced: bool) -> dict[str, Any]:
    """In this process: `devices` devices first-sync at once against a server process; memory readings."""
    scenario = fleet_scenario(devices)
    fd_limit = raise_fd_limit()
    if gated and devices + 64 > fd_limit - 256:
        raise RuntimeError(f"{devices} gated devices need one connection each; the open-file limit is {fd_limit}")
    server = await asyncio.to_thread(start_server_process, scenario)
    gate = Gate(1)
    try:
        connector = aiohttp.TCPConnector(limit=max(64, fd_limit - 256), socket_factory=device_socket)
        async with aiohttp.ClientSession() as admin_session, aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None), read_bufsize=DEVICE_READ_BUFFER,
                trace_configs=[gate.trace_config()] if gated else None) as session:
            admin = Admin(admin_session, server.base_url, server.admin_key)
            fleet, clock = build_fleet(scenario), RealClock(1.0)
            warm = make_device(fleet[0], clock, session, admin, server.base_url, Events(), clock.now())
            record = await warm.sync_once()  # imports, caches and the connection pool, before the baseline
            if record.result != "success":
                raise RuntimeError(f"the warm-up first sync failed: {record.error_code}")
            del warm, record
            gate.parties, gate.rounds = devices, 0
            events = Events()
            keep = (Metrics(events), Journal().attach(events))  # as `syncsim run` listens
            gc.collect()
            if traced:
                tracemalloc.start()
            traced0 = tracemalloc.get_traced_memory()[0] if traced else 0
            reset = reset_peak_rss()
            before = proc_status()
            start = time.perf_counter()
            origin = clock.now()
            fleet_devices = [make_device(e, clock, session, admin, server.base_url, events, origin) for e in fleet]
            async with asyncio.timeout(FLEET_SYNC_TIMEOUT_S):
                records = await asyncio.gather(*(d.sync_once() for d in fleet_devices))
            seconds = time.perf_counter() - start
            after = proc_status()
            traced_peak = tracemalloc.get_traced_memory()[1] - traced0 if traced else 0
            gc.collect()
            traced_held = tracemalloc.get_traced_memory()[0] - traced0 if traced else 0
            tracemalloc.stop()
            failed = [r for r in records if r.result != "success"]
            if failed:
                raise RuntimeError(f"{len(failed)} of {devices} first syncs failed, e.g. {failed[0].error_code}")
            rows = sum(d.store.row_count() for d in fleet_devices)
            del keep
    finally:
        await asyncio.to_thread(server.close)
    return {"devices": devices, "gated": gated, "traced": traced, "rows": rows, "seconds": seconds,
            "rss_before": before["VmRSS"], "hwm_before": before["VmHWM"], "hwm_reset": reset,
            "hwm_after": after["VmHWM"], "rss_after": after["VmRSS"], "traced_peak": traced_peak,
            "traced_held": traced_held, "gate_rounds": gate.rounds, "gate_timeouts": gate.timeouts}


def fleet_in_child(devices: int, *, gated: bool, traced: bool = False) -> dict[str, Any]:
    """`fleet_first_sync` in a fresh spawned process (which starts the server process itself)."""
    return run_in_child(fleet_first_sync, (devices, gated, traced), "bench-memory-fleet", FLEET_PROCESS_TIMEOUT_S)


def fleet_figures(devices: int) -> list[Figure]:
    """The fleet-wide first sync, three times, each in a fresh process: gated (the figure), as served
    (no gate) and gated under tracemalloc (Python's heap)."""
    gated = fleet_in_child(devices, gated=True)
    served = fleet_in_child(devices, gated=False)
    heap = fleet_in_child(devices, gated=True, traced=True)
    rows = gated["rows"] / devices  # rows held per device once synced

    def growth_kib(m: dict[str, Any]) -> float:
        """Peak RSS growth per device, KiB."""
        return (m["hwm_after"] - m["rss_before"]) / devices / 1024

    def notes(m: dict[str, Any]) -> str:
        out = f"sync {m['seconds']:.1f} s"
        if m["gate_timeouts"]:
            out += f"; {m['gate_timeouts']} gate rounds let go by the {GATE_TIMEOUT_S:g} s timeout"
        if not m["hwm_reset"]:
            out += "; VmHWM could not be reset (clear_refs), so the peak may read low"
        return out

    peak = growth_kib(gated)
    return [
        absolute(NAME, "peak per device holding 1,000 rows, fleet first sync", peak * 1000 / rows, "KiB",
                 FLEET_TARGET_KIB, at_most=True,
                 detail=f"{devices:,} devices x {rows:,.0f} rows ({FLEET_ACCOUNTS} accounts + own ~1 KB work "
                        f"orders; rollout_monday on loopback) first-syncing at once, every device mid-download "
                        f"at the same moment ({gated['gate_rounds']} gate rounds); RSS of the devices' own "
                        f"process, VmHWM over VmRSS before the devices: "
                        f"{(gated['hwm_after'] - gated['rss_before']) / 2**20:,.1f} MiB = {peak:,.0f} KiB per "
                        f"device, {peak / rows:.3f} KiB per held row; {notes(gated)}",
                 kib_per_device=peak, kib_per_row=peak / rows, rows_per_device=rows, readings=gated),
        info(NAME, "fleet first sync peak as served, no gate", growth_kib(served) * 1000 / rows, "KiB",
             detail=f"the same fleet and reading without the gate: on loopback how many pages are in memory "
                    f"at once follows the server's pace, so this varies with the fleet size and the run; "
                    f"{notes(served)}", readings=served),
        info(NAME, "fleet first sync peak, Python heap", heap["traced_peak"] / devices / 1024, "KiB",
             detail=f"tracemalloc's peak over the gated sync, per device: Python's own allocations, without "
                    f"the allocator's overhead or reuse of memory freed before; kept once synced, after gc: "
                    f"{heap['traced_held'] / devices / 1024:.1f} KiB per device, "
                    f"{heap['traced_held'] / heap['rows'] / 1024:.3f} KiB per held row; {notes(heap)}",
             readings=heap),
    ]


def figures(quick: bool = False) -> list[Figure]:
    cfg = QUICK if quick else FULL
    return [*asyncio.run(run_async(cfg)), *fleet_figures(cfg.fleet)]
