"""syncsim inside Locust: one Locust user class per scenario user class, each user one device.

`install(path)` (called by the locustfile at import) loads the scenario, registers syncsim's command
line options and event listeners on Locust, and returns the user classes and the rollout shape for
the locustfile's namespace. Per Locust process there is one `Bridge`:

- at test start it starts the engine loop (a native thread, `loop.EngineLoop`) and a `FleetRun` on
  it: the embedded server in its own process seeded from the scenario, or `--host` with
  `--admin-key` (a running `syncsim serve`);
- a spawned user leases a device of its class (fleet order; never one in use; more users than the
  class has devices is an error that stops the test) and runs the device engine of `syncsim run`
  until Locust stops the user; a user spawned again later takes a released device back;
- every sync the engine records becomes Locust request entries (`entries.py`), fired from a
  greenlet that drains them from the engine thread every quarter second;
- at test stop it stops the devices, runs the quiet period and the end-of-run check, writes
  syncsim's reports, and sets Locust's exit code from the check (0 passed, 1 failed).

Only loopback: the embedded server listens on 127.0.0.1 and `--host` must be a loopback URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, User, constant, events, task
from locust.env import Environment
from pydantic import ValidationError
from rich.console import Console

from simulator.fleet import FleetEntry
from simulator.health import LAG_LIMIT_MS
from simulator.locust.entries import Entry, sync_entries, unfinished_entry
from simulator.locust.loop import EngineLoop, wait
from simulator.locust.server import ChildServer
from simulator.metrics import FirstSync, SyncRecord
from simulator.runner import FleetRun, RunResult
from simulator.scenario import Scenario, ScenarioError, load_scenario
from simulator.target import Target, TargetError, Where

log = logging.getLogger("syncsim")
DRAIN_EVERY_S = 0.25  # how often entries recorded by the engine thread reach Locust's statistics (real s)
HEALTH_EVERY_S = 5.0  # how often the engine loop's lag is looked at for the warning (real s)
NO_SCENARIO = ("syncsim: give the scenario with --scenario FILE "
               "(e.g. locust -f simulator/locust/locustfile.py --scenario scenarios/smoke.yaml)")


class FleetFull(Exception):
    """More Locust users of a class than the scenario has devices of it."""


def scenario_path(argv: list[str]) -> Path | None:
    """--scenario from Locust's command line (needed at import: the user classes come from it)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--scenario")
    known, _ = parser.parse_known_args(argv)
    return Path(known.scenario) if known.scenario else None


def users_given(argv: list[str]) -> bool:
    """Whether -u/--users was given (Locust fills in 1 when it was not, so its options cannot tell)."""
    return bool(os.environ.get("LOCUST_USERS")) or any(
        a in ("-u", "--users") or a.startswith("--users=") or (a.startswith("-u") and a[2:].isdigit())
        for a in argv[1:])


def load(argv: list[str]) -> tuple[Path, Scenario]:
    """The scenario named on the command line; exits with a one-line error when missing or invalid."""
    path = scenario_path(argv)
    if path is None:
        sys.exit(NO_SCENARIO)
    try:
        return path, load_scenario(path)
    except (ScenarioError, ValidationError, OSError) as exc:
        sys.exit(f"syncsim: {exc}")


class Bridge:
    """The syncsim side of one Locust process: engine loop, run, device leases, entries."""

    def __init__(self, scenario: Scenario, path: Path, users_given: bool = False) -> None:
        self.scenario = scenario
        self.path = path
        self.users_given = users_given  # -u on the command line: a constant count, not the waves
        self.environment: Environment | None = None
        self.engine: EngineLoop | None = None
        self.run: FleetRun | None = None
        self.result: RunResult | None = None
        self.pools: dict[str, deque[FleetEntry]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}  # device name -> its engine task (engine thread only)
        self.entries: deque[Entry] = deque()  # appended by the engine thread, drained by a greenlet
        self.firsts: dict[str, FirstSync] = {}  # engine thread only
        self.upload_mode = {c.name: c.behaviour.upload_mode for c in scenario.user_classes}
        self.greenlets: list[gevent.Greenlet] = []
        self.failed: str | None = None  # why the test could not run, when it could not
        self.child: ChildServer | None = None  # the embedded server, when this process started it

    # --- options ------------------------------------------------------------------------------
    @property
    def options(self) -> Any:
        assert self.environment is not None
        return self.environment.parsed_options

    def server(self) -> Where | Target:
        host = self.environment.host if self.environment is not None else None
        if not host:
            return "process"
        key = getattr(self.options, "admin_key", None)
        if not key:
            raise TargetError(f"--host {host}: give --admin-key, the key `syncsim serve` printed")
        return Target(host.rstrip("/"), key)

    # --- test lifecycle -----------------------------------------------------------------------
    def init(self, environment: Environment, **_: Any) -> None:
        from locust.runners import MasterRunner, WorkerRunner

        self.environment = environment
        if isinstance(environment.runner, MasterRunner | WorkerRunner):
            sys.exit("syncsim: master/worker mode (--master, --worker, --processes) is not supported yet: run one "
                     "Locust process (docs/locust.md)")

    def test_start(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        if self.run is not None:  # the web UI's "new test": each test gets a fresh run and server
            self.test_stop(environment)
        users = getattr(self.options, "num_users", None) if self.users_given else None
        if users and users > len(self.fleet()):
            self.fail(f"{users} users is more than the scenario's fleet of {len(self.fleet())} devices "
                      f"({self.fleet_words()}); each Locust user is one device")
            return
        try:
            server = self.server()
            if server == "process":  # the embedded server, in a child process of this one
                self.child = ChildServer(self.path)
                server = Target(self.child.base_url, self.child.admin_key)
            if self.engine is None:
                self.engine = EngineLoop()
            run = FleetRun(self.scenario, server=server, out_root=Path(self.options.syncsim_out),
                           console=Console(stderr=True))
            self.engine.run(run.__aenter__())
        except (TargetError, OSError, RuntimeError) as exc:
            self._close_child()
            self.fail(str(exc))
            return
        self.run = run
        self.result = None
        self.firsts.clear()
        self.pools = {c.name: deque(e for e in run.fleet if e.spec.user_class == c.name)
                      for c in self.scenario.user_classes}
        run.events.sync_finished.add_listener(self._on_sync)
        run.events.first_sync_done.add_listener(self._on_first_sync)
        if getattr(self.options, "syncsim_requests", False):
            run.events.request.add_listener(self._on_request)
        self.greenlets = [gevent.spawn(self._drain_forever), gevent.spawn(self._watch_health)]
        log.info("syncsim: %s, %d devices (%s), server %s", self.scenario.name, len(run.fleet), self.fleet_words(),
                 run.base_url)

    def test_stop(self, environment: Environment, **_: Any) -> None:
        run, engine = self.run, self.engine
        if run is None or engine is None:
            return
        self.run = None
        log.info("syncsim: test stopped; quiet period (final syncs) and end-of-run check for %d devices",
                 len(run.devices))

        async def finish() -> RunResult:
            await _cancelled(list(self.tasks.values()))
            self.tasks.clear()
            try:
                return await run.finish()
            finally:
                await run.__aexit__(None, None, None)

        try:
            result = engine.run(finish())
        finally:
            for g in self.greenlets:
                g.kill(block=False)
            self._drain()
            self._close_child()
        for first in (f for f in run.metrics.first_syncs if not f.finished):
            self._fire(unfinished_entry(first))
        self.result = result
        environment.process_exit_code = result.exit_code
        log.info("syncsim: end-of-run check %s; reports in %s", "passed" if result.passed else "FAILED",
                 result.out_dir)

    def quitting(self, environment: Environment, **_: Any) -> None:
        if self.run is not None:
            self.test_stop(environment)
        if self.engine is not None:
            self.engine.close()
        if self.failed is not None:
            environment.process_exit_code = 2

    def _close_child(self) -> None:
        if self.child is not None:
            self.child.close()
            self.child = None

    def fail(self, why: str) -> None:
        """The test cannot run: one line saying why, Locust stops and exits non-zero."""
        self.failed = why
        log.error("syncsim: %s", why)
        environment = self.environment
        if environment is not None:
            environment.process_exit_code = 2
            if environment.runner is not None:
                gevent.spawn(environment.runner.quit)

    # --- devices --------------------------------------------------------------------------------
    def fleet(self) -> list[FleetEntry]:
        if self.run is not None:
            return self.run.fleet
        from simulator.fleet import build_fleet
        return build_fleet(self.scenario)

    def fleet_words(self) -> str:
        counts = self.scenario.class_counts()
        return ", ".join(f"{n} {name}" for name, n in counts.items())

    def lease(self, user_class: str) -> FleetEntry:
        pool = self.pools.get(user_class)
        if not pool:
            raise FleetFull(f"more {user_class} users than the scenario's {self.scenario.class_counts()[user_class]} "
                            f"{user_class} devices; each Locust user is one device (fleet: {self.fleet_words()})")
        return pool.popleft()

    def release(self, entry: FleetEntry) -> None:
        self.pools.setdefault(entry.spec.user_class, deque()).appendleft(entry)

    def start_device(self, entry: FleetEntry) -> None:
        run, engine = self.run, self.engine
        assert run is not None and engine is not None

        def start() -> None:
            device = run.device(entry)
            self.tasks[entry.spec.name] = asyncio.ensure_future(device.run(float("inf")))

        wait(engine.call(start))

    def stop_device(self, entry: FleetEntry) -> None:
        engine = self.engine
        if engine is None or self.run is None:
            return

        async def stop() -> None:
            task = self.tasks.pop(entry.spec.name, None)
            if task is not None:
                await _cancelled([task])

        wait(engine.submit(stop()))

    def elapsed_s(self) -> float:
        """Scenario seconds since the run started (0 before)."""
        run = self.run
        return run.clock.now() - run.origin if run is not None else 0.0

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
        if self.environment is None:
            return
        self.environment.events.request.fire(
            request_type=entry.request_type, name=entry.name, response_time=entry.response_time_ms,
            response_length=entry.response_length, exception=SyncError(entry.error) if entry.error else None,
            context={})

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


# --- Locust classes ---------------------------------------------------------------------------------
class DeviceUser(User):
    """One simulated device; the device engine runs on the engine loop while this user lives."""

    abstract = True
    wait_time = constant(1)  # the greenlet only stands by; the device keeps its own schedule
    bridge: Bridge
    scenario_class: str
    entry: FleetEntry | None = None  # the device this user drives

    def on_start(self) -> None:
        if self.bridge.failed is not None or self.bridge.run is None:
            return  # the test could not start (said once, Locust is quitting): stand by
        try:
            self.entry = self.bridge.lease(self.scenario_class)
        except FleetFull as exc:
            self.bridge.fail(str(exc))
            return
        self.bridge.start_device(self.entry)

    def on_stop(self) -> None:
        entry = self.entry
        if entry is not None:
            self.bridge.stop_device(entry)
            self.bridge.release(entry)
            self.entry = None

    @task
    def stand_by(self) -> None:
        """Nothing to do here: the device syncs and edits on its own schedule."""


def user_classes(bridge: Bridge) -> dict[str, type[DeviceUser]]:
    """One Locust user class per scenario class, named after it, weighted by its device count."""
    counts = bridge.scenario.class_counts()
    return {c.name: type(c.name, (DeviceUser,), {
        "abstract": False, "bridge": bridge, "scenario_class": c.name, "weight": max(1, counts[c.name]),
        "__module__": __name__, "__doc__": f"A {c.name} device of scenario {bridge.scenario.name}."})
        for c in bridge.scenario.user_classes}


def rollout_shape(bridge: Bridge, classes: dict[str, type[DeviceUser]]) -> type[LoadTestShape]:
    """The scenario's rollout waves as a LoadTestShape; with -u (and -r) a constant count instead.

    At scenario time t the user count is the number of devices whose wave has come; new users of a
    wave of one class are of that class. The test ends at the scenario's duration, or at -t."""
    fleet = sorted(bridge.fleet(), key=lambda e: e.start_s)

    class RolloutShape(LoadTestShape):
        use_common_options = True

        def tick(self) -> tuple[int, float] | tuple[int, float, list[type[User]] | None] | None:
            options = bridge.options
            if bridge.failed is not None:
                return None
            t = bridge.elapsed_s()
            run_time = getattr(options, "run_time", None)
            if (run_time and self.get_run_time() >= run_time) or t >= bridge.scenario.duration_s:
                return None
            if bridge.users_given and getattr(options, "num_users", None):
                return int(options.num_users), float(options.spawn_rate or 1)
            due = [e for e in fleet if e.start_s <= t]
            new = {e.spec.user_class for e in due[self.runner.user_count if self.runner else 0:]}
            only: list[type[User]] | None = [classes[n] for n in sorted(new)] if len(new) == 1 else None
            return len(due), float(max(1, len(due))), only

    return RolloutShape


def install(argv: list[str] | None = None) -> dict[str, Any]:
    """Load the scenario and hook syncsim into Locust; the locustfile puts the result in its namespace."""
    argv = sys.argv if argv is None else argv
    path, scenario = load(argv)
    bridge = Bridge(scenario, path, users_given=users_given(argv))
    classes = user_classes(bridge)

    @events.init_command_line_parser.add_listener
    def _options(parser: Any) -> None:
        group = parser.add_argument_group("syncsim")
        group.add_argument("--scenario", help="the syncsim scenario file (required)", env_var="SYNCSIM_SCENARIO")
        group.add_argument("--admin-key", help="admin key of the `syncsim serve` given by --host",
                           env_var="SYNCSIM_ADMIN_KEY")
        group.add_argument("--syncsim-out", default="reports", help="folder for syncsim's reports (default reports)")
        group.add_argument("--syncsim-requests", action="store_true", default=False,
                           help="also put every HTTP request of every device in Locust's statistics")

    events.init.add_listener(bridge.init)
    events.test_start.add_listener(bridge.test_start)
    events.test_stop.add_listener(bridge.test_stop)
    events.quitting.add_listener(bridge.quitting)
    names: dict[str, Any] = {f"{name}_device": cls for name, cls in classes.items()}
    names["RolloutShape"] = rollout_shape(bridge, classes)
    names["syncsim_bridge"] = bridge
    return names

