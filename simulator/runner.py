"""`syncsim run`: compose the server, the fleet and the reports for one scenario.

1. Start the mock server (seeded from the scenario): on the run's own virtual-time loop behind memory
   pipes (the default), or in its own process on an ephemeral loopback port (`--clock real`), or use
   one already running (`--target`); join its clock and start the run.
2. Start each device at its rollout wave; devices sync and edit until the scenario's duration.
3. Quiet period: pause the back office, bring every device online, sync every device twice
   (round one delivers all edits, round two downloads everybody's), bounded by quiet_period_s.
4. Compare every device's store with the server's snapshot for its user; write the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import itertools
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from rich.console import Console

from simulator import advisor, seeds
from simulator.check import compare, summarize_checks
from simulator.clock import Clock, ClockKind, RealClock, Timeline, VirtualClock, cpu_s, run_virtual, wall_s
from simulator.device.client import ApiClient, Identity
from simulator.device.device import Device
from simulator.events import Events
from simulator.fleet import FleetEntry, build_fleet
from simulator.health import peak_rss_mb
from simulator.ledger import DeviceEnd, Journal, check_run
from simulator.ledger.journal import Probe
from simulator.ledger.paths import paths_reached
from simulator.ledger.report import REPORT_INVARIANT, check_report
from simulator.metrics import DeviceEvent, Metrics, SyncRecord
from simulator.network import Link, NetworkModel, NetworkPreset
from simulator.network.faults.connection import DEFAULT_KEEPALIVE_S, POOL_CONNECTIONS
from simulator.parts import DevicePart
from simulator.progress import Progress
from simulator.protocol.odata import delta_link_version
from simulator.reports import (
    class_table,
    render_generator,
    render_ledger,
    render_table,
    report_paths,
    summarize,
    write_records,
    write_summary,
)
from simulator.scenario import Scenario, ScenarioError
from simulator.server.serve import raise_fd_limit
from simulator.storms import run_storms
from simulator.target import Admin, Target, Where, check_same_scenario, server_for_run
from simulator.timeline import FleetState, TimelineSampler, saturation
from simulator.transport import SocketTransport, Transport


@dataclass(slots=True)
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    passed: bool
    interrupted_exit: int | None = None  # 130 (SIGINT) or 143 (SIGTERM): the run was stopped early

    @property
    def exit_code(self) -> int:
        if self.interrupted_exit is not None:
            return self.interrupted_exit
        return 0 if self.passed else 1


# A device's own connection pool, as a phone's HTTP client keeps one (OkHttp's default: at most 5
# requests per host). It follows the network model, which keeps an idle connection the class's
# `connection.keepalive_s` seconds of the device's lived time (default 60 s: carrier NATs end idle
# connections sooner than OkHttp's 5 minutes), so the server sees the connections the model charges for.
DEVICE_CONNECTIONS = POOL_CONNECTIONS
DEVICE_KEEPALIVE_S = DEFAULT_KEEPALIVE_S  # scenario seconds
SHARED_KEEPALIVE_S = 15.0  # the runner's own session (admin calls, storms): aiohttp's default


def default_clock(scenario: Scenario, server: Where | Target) -> Clock:
    """A virtual run's clock (on the running VirtualEventLoop), or a real-time one at the scenario's time_scale."""
    return VirtualClock() if server == "virtual" else RealClock(scenario.time_scale)


def make_device(entry: FleetEntry, clock: Clock,
                session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession], admin: Admin,
                base_url: str, events: Events, origin: float,
                networks: Callable[[str], NetworkPreset] | None = None) -> Device:
    """One device of the fleet; `networks` gives a network's figures by name (the scenario's own
    networks and the presets: `Scenario.network`), default the presets."""
    spec = entry.spec
    switches = itertools.count(1)

    connection = entry.connection

    def network_for(name: str, draws: int | None = None) -> NetworkModel:
        rng = seeds.network_rng(spec.seed, draws)
        return NetworkModel.from_preset(name, rng, networks(name) if networks is not None else None, connection)

    model = network_for(spec.network)
    # the device's lived time: its ApiClient waits through it (the link's), its link measures the
    # keep-alive on it
    link = Link(model, clock, session, Timeline(clock))
    who = Identity(spec.name, spec.user, spec.user_class)

    async def token() -> str:
        return await admin.token(spec.user)

    api = ApiClient(link, clock, base_url, token, who, events, max_retries=entry.user_class.behaviour.retries)
    return Device(spec, entry.user_class, api, link, clock, events, origin,
                  network_for=lambda name: network_for(name, next(switches)))


class FleetRun:
    """One run's composition, shared by `syncsim run` and the Locust integration: the clock, the
    server and how it is reached (transport), one client session, the admin client, the metrics
    and the ledger's journal. A driver makes devices with `device()` and runs them (at their
    rollout waves, or as Locust spawns users); `finish()` then runs the quiet period and the
    end-of-run check and writes the reports. Only the devices made are synced, checked and reported.

        async with FleetRun(scenario) as run:       # start() ... close()
            ...drive run.device(entry) for entries of run.fleet...
            result = await run.finish()

    A run split over processes (Locust's workers) has one primary, which joins the server's clock
    and starts the run, and others (`primary=False`, on the primary's clock and origin) that only
    hold devices. The primary takes `finish()`'s steps with the rounds spread over every process:
    `quiet_begins()`, then `quiet_round()` on each, `hand_in()` from each, `report()` of the merged
    parts (parts.merge).
    """

    def __init__(self, scenario: Scenario, *, server: Where | Target = "virtual", out_root: Path = Path("reports"),
                 console: Console | None = None, report: bool = True, clock: Clock | None = None,
                 primary: bool = True, origin: float | None = None) -> None:
        self.scenario = scenario
        self.server = server
        self.out_root = out_root
        self.console = console or Console(stderr=True)
        self.report_tables = report
        self.clock = clock or default_clock(scenario, server)
        self.primary = primary
        self.events = Events()
        self.metrics = Metrics(self.events)
        self.journal = Journal().attach(self.events)
        self.fleet = build_fleet(scenario)
        self.devices: dict[str, Device] = {}
        self.gauge = FleetGauge(self.events)
        self.storms: Counter[str] = Counter()
        self.origin = origin or 0.0
        self._watched = revoked_devices(scenario, self.fleet)
        self._stack = contextlib.AsyncExitStack()
        self._wall0 = 0.0
        self._sampling: asyncio.Future[None] | None = None
        self._quiet: QuietPeriod | None = None
        self._cpu0 = 0.0
        self.transport: Transport = SocketTransport()  # the server's, once entered
        self.pipes: aiohttp.ClientSession | None = None  # the devices' shared pool of memory pipes (virtual time)

    async def __aenter__(self) -> FleetRun:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> FleetRun:
        """Start (or reach) the server, open the sessions, start the run and its sampling."""
        t_seed = wall_s()
        try:
            endpoint = await self._stack.enter_async_context(server_for_run(self.scenario, self.clock, self.server))
            self.base_url = endpoint.base_url
            self.transport = endpoint.transport
            limit = raise_fd_limit() if self.transport.kind == "sockets" else 1 << 16
            self.session = await self._stack.enter_async_context(
                self.transport.session(limit=max(64, limit - 256), keepalive_s=SHARED_KEEPALIVE_S, device=False))
            if self.transport.kind == "memory":
                # memory pipes hold no socket and no server sees them as a phone's connections: the
                # devices share one pool, and the network model alone decides when a connection is new
                self.pipes = await self._stack.enter_async_context(
                    self.transport.session(limit=0, keepalive_s=SHARED_KEEPALIVE_S, device=True))
            self.admin = Admin(self.session, endpoint.base_url, endpoint.admin_key)
            await check_same_scenario(self.admin, self.scenario, endpoint.base_url)
            where = "virtual time, in process" if self.clock.kind == "virtual" else endpoint.base_url
            self.console.print(f"server ({where}) ready ({wall_s() - t_seed:.1f}s)")
            self._wall0, self._cpu0 = wall_s(), cpu_s()
            if self.primary:
                if endpoint.joins_clock:
                    await self.admin.join_clock(self.clock)
                self.origin = self.clock.now()
                await self.admin.start_run(self.origin)
            self.sampler = TimelineSampler(self.clock, self.origin, self.fleet_state, self.admin.health,
                                           _read_now(endpoint.counters) if endpoint.counters else self.admin.counters,
                                           generator=self.clock.kind == "real")
            self._sampling = self._stack.enter_context(_background(self.sampler.run()))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def close(self) -> None:
        """Close the devices' connections, the sessions and the server (if this run started it)."""
        try:
            await self.close_devices()
        finally:
            await self._stack.aclose()

    def device(self, entry: FleetEntry) -> Device:
        """The device of a fleet entry, made on first use."""
        device = self.devices.get(entry.spec.name)
        if device is None:
            pool: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession] = (
                self.pipes if self.pipes is not None
                else functools.partial(self.device_pool, entry.user_class.connection.keepalive_s))
            device = make_device(entry, self.clock, pool, self.admin, self.base_url, self.events,
                                 self.origin, self.scenario.network)
            self.devices[entry.spec.name] = device
            self.gauge.devices += 1
            if entry.spec.name in self._watched:
                self.journal.watch(device.spec.name, held_probe(device))
        return device

    def device_pool(self, keepalive_s: float = DEVICE_KEEPALIVE_S) -> aiohttp.ClientSession:
        """A device's own connection pool (one session per device at a time, opened at its first
        request, and anew after the model ended its connections) for a class keeping idle
        connections `keepalive_s` seconds of lived time (0: a new connection for every request).

        The network model decides when the device's connection is new, and its Link drops this pool
        then (docs/scenarios.md, Connections). The pool's own keep-alive is only a safety net, so it
        must never close a connection the model keeps: the model keeps one through `keepalive_s` of
        the device's lived time, where real pauses (the device's own work) count their real length
        and waits their scenario length, no less than their real length from time_scale 1 up; so a
        kept connection is idle at most `keepalive_s` real seconds (all of it real pauses), or
        `keepalive_s / time_scale` below time_scale 1 (all of it waits). Sockets are not held through
        the waits between syncs for that long: the Link ends the connections a wait will outlive as
        the wait starts (Timeline.on_sleep); only waits of unknown length (an airplane-mode class's
        idle wait) leave a connection to this timeout."""
        keepalive_real_s = max(keepalive_s, self.clock.to_real(keepalive_s))
        return self.transport.session(limit=DEVICE_CONNECTIONS, keepalive_s=keepalive_real_s if keepalive_s > 0 else 0.0,
                                      device=True)

    async def close_devices(self) -> None:
        """Close every device's own connections."""
        await asyncio.gather(*(d.link.close() for d in self.devices.values()))

    def fleet_state(self) -> FleetState:
        return self.gauge.state(len(self.metrics.records))

    async def quiet_round(self) -> None:
        """One round of the quiet period's final syncs for every device made (the first round also
        ends the scenario's time for them: a first sync completed from then on is marked so)."""
        if self._quiet is None:
            for device in self.devices.values():
                device.end_of_run()
            self._quiet = QuietPeriod(list(self.devices.values()), self.clock, self.scenario.quiet_period_s)
        await self._quiet.round()

    async def hand_in(self) -> DevicePart:
        """Everything the devices of this process recorded and how they ended (after the quiet period)."""
        if self._sampling is not None:
            await _stopped(self._sampling)
        skipped = self._quiet.skipped() if self._quiet is not None else {}
        devices = list(self.devices.values())
        for device in devices:  # the quiet period is over: a first sync not completed never was
            device.first_sync_unfinished()
        return DevicePart(self.metrics.records, self.metrics.first_syncs, self.metrics.events, self.journal,
                          [device_end(d, skipped) for d in devices], skipped, list(self.sampler.samples),
                          self.sampler.own.lags_ms(), dict(self.storms))

    async def finish(self, watch: Progress | None = None) -> RunResult:
        """The scenario's time is up: the end of a run in one process (its devices all here):
        quiet period (final syncs), end-of-run check, ledger, reports. A run split over processes
        (Locust) takes the same steps, the rounds on every process: `quiet_begins`, `quiet_round` on
        each, `hand_in` from each, `report` of their merged parts (parts.merge)."""
        if watch is not None:
            watch.phase("quiet period: final syncs")
        await self.quiet_begins()
        for _ in range(QUIET_ROUNDS):
            await self.quiet_round()
        await self.close_devices()  # their sockets are done: the check's own requests need file descriptors
        part = await self.hand_in()
        if watch is not None:
            await watch.stop()  # its last line before the reports, not after them
        return await self.report(part)

    async def finish_interrupted(self, watch: Progress | None, signal_name: str) -> RunResult:
        """An interrupt stopped the devices: no quiet period; the records so far, their reports and
        the report check, marked interrupted; the end-of-run check and the ledger do not run (devices
        stopped mid-sync would fail them for nothing)."""
        for device in self.devices.values():
            device.end_of_run()
        await self.close_devices()
        part = await self.hand_in()
        if watch is not None:
            await watch.stop()
        counters = await self.admin.counters()
        counters["faults_injected"] = faults_injected(counters, Counter(part.storms), part.events)
        check = {**summarize_checks([], {}), "passed": False, "interrupted": signal_name}
        ledger = interrupted_ledger(part, signal_name)
        return _report(self.scenario, part, check, ledger, counters, self.cost(), self.out_root,
                       self.console if self.report_tables else Console(quiet=True), self.clock,
                       interrupted=signal_name)

    async def quiet_begins(self) -> None:
        """The quiet period starts: the back office pauses (then every device syncs, in rounds)."""
        await self.admin.back_office(False)

    async def report(self, part: DevicePart) -> RunResult:
        """Check the handed-in devices against the server, run the ledger, write the reports."""
        return await check_and_report(self.scenario, self.admin, part, self.cost(), self.out_root,
                                      self.console if self.report_tables else Console(quiet=True), self.clock)

    def cost(self) -> RunCost:
        """What the run has cost the generator so far (wall and CPU seconds since the server was ready)."""
        return RunCost(wall_s() - self._wall0, cpu_s() - self._cpu0, self.clock.now() - self.origin)


LEDGER_TABLE_WIDTH = 1000  # the console table as the ledger reads it: wide enough that no cell wraps
GENERATOR_FIELDS = ("wall_s", "generator")
"""The fields of summary.json about the generator itself (its wall time, CPU, memory and health): in a
virtual-time run the only ones that differ between two runs of the same scenario and seed."""


@dataclass(frozen=True, slots=True)
class RunCost:
    """How long a run lasted, from its start to the end of its quiet period: `run_s` scenario seconds
    (a fact of the run, the same for every run of a seed in virtual time), and the wall and CPU
    seconds the device process spent on it (generator facts, never inputs to a figure: with the
    `generator` section they fill, the only fields of summary.json that differ between two runs of
    one seed)."""

    wall_s: float
    cpu_s: float
    run_s: float


async def check_and_report(scenario: Scenario, admin: Admin, part: DevicePart, cost: RunCost, out_root: Path,
                           console: Console, clock: Clock) -> RunResult:
    """Compare every checked device with the server's view of its user, run the ledger, write the
    reports: for one process's devices or the merged parts of several."""
    views, expected = [], {}
    for end in (e for e in part.ends if e.checked):  # one snapshot at a time: its rows are compared, then dropped
        snapshot = await admin.snapshot(end.user)
        views.append(compare(end.name, end.rows, snapshot["tables"], len(end.pending), snapshot.get("contents")))
        expected[end.name] = {"tables": {}, "files": snapshot["files"]}  # the ledger reads files; rows via views
    check = summarize_checks(views, part.skipped)
    ledger = check_run(part.journal, await admin.ledger(), part.ends, expected, {v.device: v for v in views})
    counters = await admin.counters()
    counters["faults_injected"] = faults_injected(counters, Counter(part.storms), part.events)
    ledger["paths"] = paths_reached(part.journal, counters, ledger["invariants"])
    ledger["not_reached"] = [name for name, n in ledger["paths"].items() if n == 0]
    return _report(scenario, part, check, ledger, counters, cost, out_root, console, clock)


def run_blocking(scenario: Scenario, out_root: Path = Path("reports"), *, server: Where | Target = "virtual",
                 **options: Any) -> RunResult:
    """`run_scenario` to the end, on a new event loop: a VirtualEventLoop for a virtual run, asyncio's
    own loop for a real-time one."""
    main = run_scenario(scenario, out_root, server=server, **options)
    return run_virtual(main) if server == "virtual" else asyncio.run(main)


async def run_scenario(scenario: Scenario, out_root: Path = Path("reports"), *, progress: bool = True,
                       console: Console | None = None, server: Where | Target = "virtual",
                       report: bool = True) -> RunResult:
    """Run a scenario against `server` (default: the embedded server on this virtual-time loop; run
    it with `run_blocking`) and write its reports; `report=False` leaves out the end-of-run tables on
    the console (the files are written)."""
    if not sum(scenario.class_counts().values()):
        raise ScenarioError(f"scenario {scenario.name!r} has no devices to run (no user classes, or every class's "
                            "count is 0): give a class a count of 1 or more")
    console = console or Console(stderr=True)
    run = FleetRun(scenario, server=server, out_root=out_root, console=console, report=report)
    console.print(f"[bold]{scenario.name}[/]: {len(run.fleet)} devices, {scenario.duration_s:g}s of scenario time "
                  f"{_time_words(run.clock, scenario.duration_s)}; {_server_words(server)}...")
    async with run:
        devices = [run.device(e) for e in run.fleet]
        with fewer_collections():
            return await _drive(run, devices, scenario, progress, console)


async def _drive(run: FleetRun, devices: list[Device], scenario: Scenario, progress: bool,
                 console: Console) -> RunResult:
    """The devices at their rollout waves until the scenario's time is up, then the run's end."""
    watch = Progress(run.metrics, len(devices), run.clock, run.origin, scenario.duration_s, enabled=progress,
                     console=console)
    interrupt = Interrupt()
    async with watch:
        stop_at = run.origin + scenario.duration_s
        async with _running(run_storms(scenario, run.session, run.base_url, run.admin.token, run.clock, stop_at,
                                       run.storms)):
            fleet = asyncio.ensure_future(_run_fleet(devices, run.fleet, run.clock, stop_at))
            with interrupt.installed(fleet):
                try:
                    await fleet
                except asyncio.CancelledError:
                    if interrupt.signal is None:
                        raise
                if interrupt.signal is not None:  # still installed: a second signal while it reports exits
                    return await run.finish_interrupted(watch, interrupt.signal)
        return await run.finish(watch)  # the quiet period: Python's own Ctrl-C (KeyboardInterrupt, exit 130)


INTERRUPT_EXIT = {"SIGINT": 130, "SIGTERM": 143}


class Interrupt:
    """Ctrl-C (SIGINT) or SIGTERM (a CI job's timeout) while devices run: the first one stops the
    devices and the run reports what happened so far, marked interrupted (exit 130 or 143); a second
    one, while it reports, exits at once (os._exit: a KeyboardInterrupt raised in the middle of the
    loop's own work could leave the loop unable to close). Installed on the running loop from the main thread only
    (a run from another thread keeps Python's own handling)."""

    def __init__(self) -> None:
        self.signal: str | None = None

    @contextlib.contextmanager
    def installed(self, target: asyncio.Future[Any]) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        sigs = [signal.SIGINT, signal.SIGTERM]
        for sig in sigs:
            loop.add_signal_handler(sig, self._on, sig.name, target)
        try:
            yield
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

    def _on(self, name: str, target: asyncio.Future[Any]) -> None:
        if self.signal is not None:  # the second one: at once, whatever the loop was doing
            print(f"syncsim: {name} again: stopped at once", file=sys.stderr, flush=True)
            os._exit(INTERRUPT_EXIT[name])
        self.signal = name
        target.cancel()


GC_THRESHOLDS = (50_000, 20, 100)
"""Python's collector thresholds while a fleet runs (the default is 700, 10, 10): a fleet of 20,000
devices holds millions of objects, and the default collected them so often that collecting took most
of a run (10.7 s of 69 s at 2,000 devices; 1.9 s with these)."""


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """While a fleet runs: what was built before it (the seeded store, the devices) is left out of
    every collection (gc.freeze), and collections are rarer (GC_THRESHOLDS). Reference cycles are
    still collected; only the generator's own time changes."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def timeline_marks(scenario: Scenario) -> list[dict[str, Any]]:
    """Rollout waves and privilege changes, in scenario seconds since the run's start, for the charts."""
    marks = [{"t": w.at_s, "label": f"wave: {w.count if w.count is not None else 'all'} {w.user_class or 'users'}"}
             for w in scenario.rollout if w.at_s > 0]
    marks += [{"t": p.at_s, "label": f"{p.user_class} ×{p.users}: {p.table} "
               + ", ".join(f"{k} {v}" for k, v in (("read", p.read), ("write", p.write)) if v)}
              for p in scenario.privilege_changes]
    return sorted(marks, key=lambda m: m["t"])


class FleetGauge:
    """How many of the devices made are offline and syncing now, kept from their `state_changed`
    events (a device starts online and idle), so a sample of the fleet costs nothing per device."""

    def __init__(self, events: Events) -> None:
        self.devices = 0
        self.offline: set[str] = set()  # membership only: never iterated
        self.syncing: set[str] = set()
        events.state_changed.add_listener(self._changed)

    def _changed(self, device: str, online: bool, syncing: bool) -> None:
        (self.offline.discard if online else self.offline.add)(device)
        (self.syncing.add if syncing else self.syncing.discard)(device)

    def state(self, syncs_done: int) -> FleetState:
        return FleetState(self.devices - len(self.offline), len(self.offline), len(self.syncing), syncs_done)


@contextlib.asynccontextmanager
async def _running(work: Awaitable[None]) -> AsyncIterator[None]:
    """Run `work` in the background for the block, then cancel it."""
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        await _stopped(task)


@contextlib.contextmanager
def _background(work: Awaitable[None]) -> Iterator[asyncio.Future[None]]:
    """Run `work` in the background; cancelled at the end of the block if still running."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        task.cancel()


async def _stopped(task: asyncio.Future[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _server_words(server: Where | Target) -> str:
    if isinstance(server, Target):
        return f"driving the server at {server.url}"
    return {"virtual": "seeding data (server in process, no sockets)", "process": "seeding data (server in its own process)",
            "in_process": "seeding data (server in process)"}[server]


def _time_words(clock: Clock, duration_s: float) -> str:
    if clock.kind == "virtual":
        return "in virtual time"
    return f"at x{clock.time_scale:g} (~{clock.to_real(duration_s):.0f}s real)"


def _read_now(read: Callable[[], dict[str, Any]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A synchronous reading as the sampler's awaitable fetch."""
    async def fetch() -> dict[str, Any]:
        return read()
    return fetch


def faults_injected(counters: dict[str, Any], storms: Counter[str], events: list[DeviceEvent]) -> dict[str, int]:
    """Every fault the run injected, by kind: the server's, the storms', and the devices' own
    (airplane mode, cuts that made a request restart, 429s met)."""
    kinds = Counter(e.kind for e in events)
    out = {f"server {k}": n for k, n in sorted(counters.get("faults", {}).items())}
    out.update({k.replace("_", " "): n for k, n in sorted(storms.items())})
    out.update({"airplane mode on": kinds["airplane_on"], "requests cut by airplane mode": kinds["restart"],
                "429s met by devices": kinds["throttled"], "retries after network errors or 5xx": kinds["retry"],
                "delta tokens expired": kinds["token_expired"]})
    return {k: n for k, n in out.items() if n}


def held_probe(device: Device) -> Probe:
    """What a device holds after a sync, per table: (its delta token's version, row ids)."""
    def probe() -> dict[str, tuple[int, frozenset[str]]]:
        links = device.engine.state.delta_links
        return {t: (delta_link_version(link), frozenset(device.store.ids(t))) for t, link in links.items()}
    return probe


def revoked_devices(scenario: Scenario, fleet: list[FleetEntry]) -> set[str]:
    """Devices of users who lose read access during the run: the ledger sees what they hold after
    each sync (the first `users` devices of the class, as the server picks its users)."""
    out: set[str] = set()
    for change in scenario.privilege_changes:
        if change.read is not None:
            out.update([e.spec.name for e in fleet if e.spec.user_class == change.user_class][: change.users])
    return out


def device_end(device: Device, skipped: dict[str, str]) -> DeviceEnd:
    """How a device ended the run, for the ledger."""
    return DeviceEnd(name=device.spec.name, user=device.spec.user, pending=[o.op_id for o in device.outbox.pending()],
                     rows=device.store.snapshot(), files=device.store.file_snapshot(),
                     token_regressions=list(device.engine.state.token_regressions),
                     stopped=device.gave_up or ("STORAGE_FULL" if skipped.get(device.spec.name, "").startswith(
                         "STORAGE_FULL") else None),
                     checked=device.spec.name not in skipped)


async def _run_fleet(devices: list[Device], fleet: list[FleetEntry], clock: Clock, stop_at: float) -> None:
    async def one(device: Device, start_s: float) -> None:
        await clock.sleep(start_s)
        await device.run(stop_at)

    tasks = [asyncio.ensure_future(one(d, e.start_s)) for d, e in zip(devices, fleet, strict=True)]
    try:
        await clock.sleep(max(0.0, stop_at - clock.now()))
    finally:  # the scenario's end, or an interrupt: every device stops where it is
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


QUIET_ROUNDS = 2  # round one delivers every edit, round two downloads everybody's


class QuietPeriod:
    """The end of a run: rounds of final syncs (every device at once), all within limit_s scenario
    seconds from the first round's start. `skipped()` then names the devices left out of the check,
    with why: those that stopped syncing (storage full at first sync), those whose storage is full
    at their final syncs, and those whose final syncs did not finish in time (these fail the check).
    """

    def __init__(self, devices: list[Device], clock: Clock, limit_s: float) -> None:
        self.devices, self.clock, self.limit_s = devices, clock, limit_s
        self.deadline = clock.now() + limit_s
        self.rounds = 0
        self.finished: dict[str, int] = {d.spec.name: 0 for d in devices}
        self.full: set[str] = set()  # devices whose storage cannot take their view any more

    async def round(self) -> None:
        self.rounds += 1

        async def final(device: Device) -> None:
            record = await device.final_sync()
            if record is not None and record.result == "success":
                self.finished[device.spec.name] += 1
            elif record is not None and record.error_code == "STORAGE_FULL":
                self.full.add(device.spec.name)

        with contextlib.suppress(TimeoutError):
            async with self.clock.timeout(self.deadline - self.clock.now()):
                await asyncio.gather(*(final(d) for d in self.devices))

    def skipped(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for d in self.devices:
            done = self.finished[d.spec.name]
            if d.gave_up:
                out[d.spec.name] = f"{d.gave_up}: stopped syncing"
            elif d.spec.name in self.full and done < self.rounds:
                out[d.spec.name] = "STORAGE_FULL: its storage cannot hold its view (edits kept in the outbox)"
            elif done < self.rounds:
                out[d.spec.name] = f"UNFINISHED: final syncs not done within quiet_period_s={self.limit_s:g}"
        return out


async def _quiet_period(devices: list[Device], clock: Clock, limit_s: float) -> dict[str, str]:
    """Both rounds of final syncs; returns the devices left out of the check, with why."""
    quiet = QuietPeriod(devices, clock, limit_s)
    for _ in range(QUIET_ROUNDS):
        await quiet.round()
    return quiet.skipped()


def _per_table(counts: dict[str, int], scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Device conflicts per table with the table's policy (keys of `counts` are "<table>/<user>")."""
    out: dict[str, dict[str, Any]] = {}
    for key, n in counts.items():
        table, _, user = key.partition("/")
        if user == "backoffice":
            continue
        meta = scenario.table(table)
        detect = scenario.server.conflict_detection if meta.conflict_detection is None else meta.conflict_detection
        entry = out.setdefault(table, {"conflicts": 0, "policy": "server wins (412)" if detect else "last writer wins"})
        entry["conflicts"] += n
    return out


WORLD_AHEAD_SHARE = 0.2
"""In real time above time_scale 1, a class whose syncs' real work (transfers, the device's own
processing) takes more than this share of the real time between its syncs is warned about."""


def world_ahead(scenario: Scenario, records: list[SyncRecord], clock: Clock) -> list[dict[str, Any]]:
    """Real time, time_scale above 1: the classes whose syncs' real work (p95 of requests' and the
    device's own seconds per sync) takes more than WORLD_AHEAD_SHARE of the real time between their
    syncs (their interval, in real seconds by the run's clock). During such work the rest of the
    world runs time_scale times faster than the device, so its figures mix two clocks."""
    if clock.kind != "real" or clock.time_scale <= 1:
        return []
    out = []
    for cls in scenario.user_classes:
        work = [r.active_s + sum(r.processing_s.values()) for r in records if r.user_class == cls.name and not r.final]
        if not work:
            continue
        p95, between = float(np.percentile(work, 95)), clock.to_real(cls.behaviour.sync_interval_s)
        if p95 > WORLD_AHEAD_SHARE * between:
            out.append({"user_class": cls.name, "share": round(p95 / between, 3), "work_p95_s": round(p95, 2),
                        "between_syncs_real_s": round(between, 2)})
    return out


def generator_health(part: DevicePart, cost: RunCost, clock: ClockKind) -> dict[str, Any]:
    """The generator's health: in real time its loop lag, CPU and memory over the run (saturation);
    in virtual time only what the run cost (it cannot saturate: time waits for the work)."""
    if clock == "real":
        return saturation(part.timeline, part.lags_ms)
    return {"clock": clock, "samples": 0, "saturated": False, "saturated_share": 0.0,
            "wall_s": round(cost.wall_s, 3), "cpu_s": round(cost.cpu_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "simulated_s_per_wall_s": round(cost.run_s / cost.wall_s, 1) if cost.wall_s > 0 else None}


def new_out_dir(out_root: Path, name: str) -> Path:
    """`<out_root>/<name>-<UTC stamp>`, with `-2`, `-3`... when runs end within the same second."""
    base = f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    for n in itertools.count(1):
        out_dir = out_root / (base if n == 1 else f"{base}-{n}")
        if not out_dir.exists():
            return out_dir
    raise AssertionError("unreachable")


def interrupted_ledger(part: DevicePart, signal_name: str) -> dict[str, Any]:
    """The ledger of an interrupted run: no invariant checked against the server (devices were
    stopped mid-sync), the report check still made; the devices' own conflict count kept."""
    reported = sum(r.conflicts for r in part.journal.records)
    uploaded = sum(r.uploaded for r in part.journal.records)
    return {"passed": False, "interrupted": signal_name, "invariants": {}, "not_exercised": [], "paths": {},
            "not_reached": [], "kept_in_stopped_outboxes": 0, "edits": {},
            "conflicts": {"reported": reported, "ledger": None, "uploaded": uploaded,
                          "reported_rate": round(reported / uploaded, 4) if uploaded else 0.0, "ledger_rate": None}}


def _report(scenario: Scenario, metrics: DevicePart, check: dict[str, Any], ledger: dict[str, Any],
            counters: dict[str, Any], cost: RunCost, out_root: Path, console: Console, clock: Clock,
            interrupted: str | None = None) -> RunResult:
    device_conflicts = sum(r.conflicts for r in metrics.records)

    def by_devices(counts: dict[str, int]) -> int:  # keys are "<table>/<user>"; the back office is not a device
        return sum(n for key, n in counts.items() if not key.endswith("/backoffice"))

    extra = {
        "scenario": scenario.name, "seed": scenario.seed, "duration_s": scenario.duration_s,
        "clock": clock.kind, "time_scale": scenario.time_scale if clock.kind == "real" else None,
        "ledger": ledger, "end_of_run_check": check,
        "server": {"conflicts": by_devices(counters.get("conflicts", {})),
                   "rejections": by_devices(counters.get("rejections", {})),
                   "back_office_refusals": sum(
                       n for k, n in counters.get("rejections", {}).items() if k.endswith("/backoffice")),
                   "rows_served": counters.get("rows_served", 0), "bytes_served": counters.get("bytes_served", 0),
                   "throttles": counters.get("throttles", {}), "writes_applied": counters.get("writes_applied", 0),
                   "requests": sum(counters.get("requests", {}).values())},
        # what the server model assumed and spent (virtual time; in real time the server's CPU decides)
        "server_model": None if clock.kind == "real" else {
            **scenario.server.model.model_dump(mode="json"), "spent": counters.get("server_time")},
        "run_s": round(cost.run_s, 3),  # scenario seconds from the run's start to the end of its quiet period
        "wall_s": round(cost.wall_s, 3),  # real seconds from the run's start to the end of its quiet period
        "device_conflicts": device_conflicts,
        "conflicts_by_table": _per_table(counters.get("conflicts", {}), scenario),
        "faults_injected": counters["faults_injected"],
        "generator_saturated": (health := generator_health(metrics, cost, clock.kind))["saturated"],
        "generator": health,
        "timeline_marks": timeline_marks(scenario),
        "world_ahead": world_ahead(scenario, metrics.records, clock),
        "advisor": advisor.report(scenario).to_dict(),  # estimates, set beside the measured figures in the report
        "interrupted": interrupted,  # SIGINT or SIGTERM: the run stopped early; its figures are what happened so far
    }
    summary = summarize(metrics.records, metrics.events, extra, first_syncs=metrics.first_syncs)
    out_dir = new_out_dir(out_root, scenario.name)
    unwritten: list[str] = []  # outputs that could not be written (a full disk): said after the verdict
    paths = report_paths(out_dir)
    records_written = _written(unwritten, lambda: write_records(out_dir, metrics.records, metrics.events,
                                                                metrics.first_syncs, metrics.timeline))
    table = Console(width=LEDGER_TABLE_WIDTH, record=True, file=io.StringIO())
    render_table(summary, console=table)  # the console's table, as text (no cell wrapped): the ledger reads it back
    shown = check_report(metrics.journal, summary, paths["syncs"] if records_written else None,
                         paths["first_syncs"] if records_written else None, table.export_text(), class_table(summary))
    ledger["invariants"][REPORT_INVARIANT] = shown.to_dict()
    ledger["passed"] = ledger["passed"] and shown.violations == 0
    if not shown.checked:
        ledger["not_exercised"].append(REPORT_INVARIANT)
    _written(unwritten, lambda: write_summary(paths, summary, metrics.records, f"syncsim: {scenario.name}",
                                              metrics.first_syncs, metrics.timeline))
    render_table(summary, console=Console(width=max(140, Console().width), quiet=console.quiet))
    if interrupted:
        return _report_interrupted(summary, ledger, paths, unwritten, interrupted, out_dir, console)
    verdict = "[green]passed[/]" if check["passed"] else "[red]FAILED[/]"
    console.print(f"end-of-run check {verdict}: {check['devices_checked']} devices, missing {check['missing']}, "
                  f"extra {check['extra']}, stale {check['stale']}, altered {check['altered']}, "
                  f"undelivered {check['undelivered']}, "
                  f"unfinished {len(check['unfinished_devices'])}, skipped {len(check['devices_skipped'])}")
    for failing in check["failing_devices"][:5]:
        console.print(f"  {failing['device']}: {'; '.join(failing['examples'])}")
    render_ledger(ledger, counters["faults_injected"], console)
    render_generator(health, console)
    for w in summary["world_ahead"]:
        console.print(f"[bold yellow]Warning: {w['user_class']}[/]: its syncs' transfers and work take up to "
                      f"{w['share'] * 100:.0f}% of the real time between its syncs ({w['work_p95_s']:.1f} s of "
                      f"{w['between_syncs_real_s']:.1f} s, p95) at time_scale {scenario.time_scale:g}: meanwhile the "
                      f"rest of the world (other devices, the back office, airplane mode, waves) ran "
                      f"{scenario.time_scale:g} times faster than its devices. The virtual clock (the default) has "
                      "one time for all.")
    for problem in unwritten:
        console.print(f"[bold red]could not write {problem}[/]: the figures above are the run's; the files are not")
    console.print(f"reports: {paths['html'].parent}" + (" (incomplete)" if unwritten else ""))
    return RunResult(out_dir, summary, bool(check["passed"]) and bool(ledger["passed"]) and not unwritten)


def _report_interrupted(summary: dict[str, Any], ledger: dict[str, Any], paths: dict[str, Path], unwritten: list[str],
                        signal_name: str, out_dir: Path, console: Console) -> RunResult:
    shown = ledger["invariants"][REPORT_INVARIANT]
    console.print(f"[bold yellow]interrupted ({signal_name}) at t={summary['run_s']:,.0f} s[/]: the records and "
                  "reports of what happened so far are written; the quiet period, the end-of-run check and the "
                  f"ledger did not run (report matches the ledger: {shown['violations']} violations of "
                  f"{shown['checked']} checked)")
    for problem in unwritten:
        console.print(f"[bold red]could not write {problem}[/]")
    console.print(f"reports: {paths['html'].parent}" + (" (incomplete)" if unwritten else ""))
    return RunResult(out_dir, summary, False, INTERRUPT_EXIT[signal_name])


def _written(unwritten: list[str], write: Callable[[], object]) -> bool:
    """Run `write`; on an OSError (a full disk, a folder gone) note which file and why, drop the file
    it left half-written, and go on: the console's verdict and tables still come."""
    try:
        write()
        return True
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else None
        if where is not None and where.is_file():
            with contextlib.suppress(OSError):
                where.unlink()  # half a report.html reads as a whole one
        unwritten.append(f"{where or 'the reports'}: {exc.strerror or exc}")
        return False
