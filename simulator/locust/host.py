"""The device host (a worker, or the only process): it runs the devices of its users on the engine
loop (`loop.EngineLoop`, a native thread), turns their syncs into Locust entries (Locust's own worker
reports carry them to the master), syncs them in the quiet period's rounds and hands them in."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from dataclasses import asdict
from typing import Any

import gevent
import gevent.event
from locust.env import Environment
from rich.console import Console

from simulator.clock import RealClock
from simulator.fleet import FleetEntry
from simulator.health import LAG_LIMIT_MS
from simulator.locust.bridge import ANSWER_TIMEOUT_S, Bridge, FleetFull, NotRunning, fingerprint, log
from simulator.locust.entries import Entry, sync_entries, unfinished_entry
from simulator.locust.loop import wait
from simulator.locust.messages import HandIn, Lease, Leased, Part, Records, Release, Round, RoundDone, Run
from simulator.metrics import FirstSync, SyncRecord
from simulator.parts import DevicePart
from simulator.runner import FleetRun
from simulator.target import Target, TargetError

DRAIN_EVERY_S = 0.25  # how often entries recorded by the engine thread reach Locust's statistics (real s)
SHIP_EVERY_S = 2.0  # how often device hosts send their new records to the coordinator's live table (real s)
HEALTH_EVERY_S = 5.0  # how often the engine loop's lag is looked at for the warning (real s)


class DeviceHost:
    """The devices of this process's users, on the engine loop, and their Locust entries."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.run: FleetRun | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}  # device name -> its engine task (engine thread only)
        self.entries: deque[Entry] = deque()  # appended by the engine thread, drained by a greenlet
        self.firsts: dict[str, FirstSync] = {}  # engine thread only
        self.upload_mode = {c.name: c.behaviour.upload_mode for c in bridge.scenario.user_classes}
        self.by_name = {e.spec.name: e for e in bridge.fleet}
        self.greenlets: list[gevent.Greenlet] = []
        self.ready = gevent.event.Event()  # set when the run's message came (and the run started, or not)
        self.leases: dict[int, gevent.event.AsyncResult] = {}
        self.numbers = itertools.count()
        self.shipped = (0, 0)  # records and first syncs sent to the coordinator's live table

    def listen(self, runner: Any) -> None:
        runner.register_message(f"syncsim_{Run.kind}", self._on_run, concurrent=True)
        runner.register_message(f"syncsim_{Leased.kind}", self._on_leased)
        runner.register_message(f"syncsim_{Round.kind}", self._on_round, concurrent=True)
        runner.register_message(f"syncsim_{HandIn.kind}", self._on_hand_in, concurrent=True)

    def _on_run(self, environment: Environment, msg: Any, **_: Any) -> None:
        b, d = self.bridge, Run.of(msg)
        self.ready.clear()
        try:
            if d.scenario != fingerprint(b.scenario):
                raise NotRunning(f"this worker's scenario ({b.path}: {fingerprint(b.scenario)}) is not the master's "
                                 f"({d.scenario}); start every worker with the master's --scenario")
            clock = RealClock.joining(d.time_scale, d.now, d.wall)
            run = FleetRun(b.scenario, server=Target(d.url, d.key), clock=clock, primary=False,
                           origin=d.origin, console=Console(stderr=True, quiet=True))
            b.engine_loop().run(run.start())
        except (NotRunning, TargetError, OSError, RuntimeError) as exc:
            log.error("syncsim: %s", exc)
            self.run = None
            self.ready.set()
            return
        self.run = run
        self.firsts.clear()
        run.events.sync_finished.add_listener(self._on_sync)
        run.events.first_sync_done.add_listener(self._on_first_sync)
        if getattr(b.options, "syncsim_requests", False):
            run.events.request.add_listener(self._on_request)
        self.shipped = (0, 0)
        self.greenlets = [gevent.spawn(self._drain_forever), gevent.spawn(self._watch_health),
                          gevent.spawn(self._ship_forever)]
        self.ready.set()

    # --- devices --------------------------------------------------------------------------------
    def lease(self, user_class: str) -> FleetEntry:
        """A device of the class for a new user, from the coordinator (which may be this process)."""
        if not self.ready.wait(ANSWER_TIMEOUT_S) or self.run is None:
            raise NotRunning("the test's run is not running")
        req = next(self.numbers)
        answer = self.leases[req] = gevent.event.AsyncResult()
        self.bridge.send(Lease(user_class, req))
        try:
            leased: Leased = answer.get(timeout=ANSWER_TIMEOUT_S)
        finally:
            self.leases.pop(req, None)
        if leased.name is None:
            raise FleetFull(leased.error or "no device")
        return self.by_name[leased.name]

    def _on_leased(self, environment: Environment, msg: Any, **_: Any) -> None:
        leased = Leased.of(msg)
        answer = self.leases.get(leased.req)
        if answer is not None:
            answer.set(leased)

    def start_device(self, entry: FleetEntry) -> None:
        run = self.run
        assert run is not None

        def start() -> None:
            device = run.device(entry)
            self.tasks[entry.spec.name] = asyncio.ensure_future(device.run(float("inf")))

        wait(self.bridge.engine_loop().call(start))

    def stop_device(self, entry: FleetEntry) -> None:
        if self.run is not None:
            async def stop() -> None:
                task = self.tasks.pop(entry.spec.name, None)
                if task is not None:
                    await _cancelled([task])

            wait(self.bridge.engine_loop().submit(stop()))
        self.bridge.send(Release(entry.spec.name))

    # --- the end of the test ----------------------------------------------------------------------
    def _on_round(self, environment: Environment, msg: Any, **_: Any) -> None:
        run = self.run
        if run is not None:
            async def final_syncs() -> None:
                await _cancelled(list(self.tasks.values()))  # devices of users still running stop here
                self.tasks.clear()
                await run.quiet_round()

            self.bridge.engine_loop().run(final_syncs())
        self.bridge.send(RoundDone(Round.of(msg).n))

    def _on_hand_in(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._ship()
        run, self.run = self.run, None
        part = DevicePart()
        if run is not None:
            engine = self.bridge.engine_loop()
            part = engine.run(run.hand_in())
            with contextlib.suppress(Exception):
                engine.run(run.close())
        for g in self.greenlets:
            g.kill(block=False)
        self._drain()
        for first in (f for f in part.first_syncs if not f.finished):
            self._fire(unfinished_entry(first))
        self.bridge.send(Part(part.to_wire()))

    def close(self) -> None:
        for g in self.greenlets:
            g.kill(block=False)

    # --- entries ------------------------------------------------------------------------------
    def _on_first_sync(self, record: FirstSync) -> None:
        if record.finished:
            self.firsts[record.device] = record

    def _on_sync(self, record: SyncRecord) -> None:
        first = self.firsts.get(record.device) if record.mode == "FIRST_SYNC" else None
        self.entries.extend(sync_entries(record, first, self.upload_mode.get(record.user_class, "batch")))

    def _on_request(self, method: str, name: str, status: int, elapsed_s: float, bytes: int, error: str | None,
                    **_: Any) -> None:
        self.entries.append(Entry(method, name, elapsed_s * 1000, bytes, error))

    def _drain(self) -> None:
        while self.entries:
            self._fire(self.entries.popleft())

    def _drain_forever(self) -> None:
        while True:
            self._drain()
            gevent.sleep(DRAIN_EVERY_S)

    def _fire(self, entry: Entry) -> None:
        environment = self.bridge.environment
        if environment is not None:
            environment.events.request.fire(
                request_type=entry.request_type, name=entry.name, response_time=entry.response_time_ms,
                response_length=entry.response_length,
                exception=SyncError(entry.error) if entry.error else None, context={})

    def _ship_forever(self) -> None:
        """Every few seconds, the records made since the last time go to the coordinator (its live table)."""
        while True:
            gevent.sleep(SHIP_EVERY_S)
            self._ship()

    def _ship(self) -> None:
        run = self.run
        if run is None:
            return
        records, firsts = list(run.metrics.records), list(run.metrics.first_syncs)  # appended by the engine thread
        (r0, f0), self.shipped = self.shipped, (len(records), len(firsts))
        if len(records) > r0 or len(firsts) > f0:
            self.bridge.send(Records([asdict(r) for r in records[r0:] if not r.final], [asdict(f) for f in firsts[f0:]]))

    def _watch_health(self) -> None:
        warned = False
        while True:
            gevent.sleep(HEALTH_EVERY_S)
            run = self.run
            sample = run.sampler.own.last_second() if run is not None else None
            if sample is not None and sample.loop_lag_ms > LAG_LIMIT_MS and not warned:
                log.warning("syncsim: the engine's event loop runs %.0f ms late (limit %.0f ms): this process is "
                            "saturated, and sync times now include the generator's own delay; use fewer users per "
                            "process (more --processes or workers)", sample.loop_lag_ms, LAG_LIMIT_MS)
                warned = True


class SyncError(Exception):
    """A failed sync or edit in Locust's statistics: the message is the error code."""

    def __str__(self) -> str:
        return str(self.args[0])


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
