"""syncsim inside Locust: one Locust user class per scenario user class, each user one device.

`install()` (called by the locustfile at import) loads the scenario, registers syncsim's command
line options, event listeners and messages on Locust, and returns the user classes and the rollout
shape for the locustfile's namespace. Each Locust process plays one or both of two roles, which talk
only through Locust's messages (in one process Locust delivers them locally, so one process and
master/worker mode run the same code):

- the **coordinator** (the master, or the only process) starts the embedded server in a child
  process (or uses `--host` with `--admin-key`), joins its clock and starts the run, tells every
  worker where the server is and what the run's clock reads (`syncsim_run`), leases devices to
  users (`syncsim_lease`: distinct identities over all workers, more users than devices is an
  error), plays the rollout shape, and at test stop drives the quiet period's rounds
  (`syncsim_round`), collects every worker's devices (`syncsim_hand_in`, `syncsim_part`), checks and
  reports them as one run and sets Locust's exit code from the check;
- the **device host** (a worker, or the only process) runs the devices of its users on the engine
  loop (`loop.EngineLoop`, a native thread), turns their syncs into Locust entries (Locust's own
  worker reports carry them to the master), syncs them in the quiet period's rounds and hands them in.

Only loopback: the embedded server listens on 127.0.0.1 and `--host` must be a loopback URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust import LoadTestShape, User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from pydantic import ValidationError
from rich.console import Console

from simulator.clock import RealClock, wall_s
from simulator.fleet import FleetEntry, build_fleet
from simulator.health import LAG_LIMIT_MS
from simulator.locust.entries import Entry, sync_entries, unfinished_entry
from simulator.locust.loop import EngineLoop, wait
from simulator.locust.server import ChildServer
from simulator.locust.waves import wave_target
from simulator.metrics import FirstSync, SyncRecord
from simulator.parts import DevicePart, merge
from simulator.reports import summarize
from simulator.runner import QUIET_ROUNDS, FleetRun, RunResult, check_and_report
from simulator.scenario import Scenario, ScenarioError, load_scenario
from simulator.target import Target, TargetError, Where

log = logging.getLogger("syncsim")
DRAIN_EVERY_S = 0.25  # how often entries recorded by the engine thread reach Locust's statistics (real s)
SHIP_EVERY_S = 2.0  # how often device hosts send their new records to the coordinator's live table (real s)
HEALTH_EVERY_S = 5.0  # how often the engine loop's lag is looked at for the warning (real s)
ANSWER_TIMEOUT_S = 60.0  # real seconds for a worker to answer a lease or hand in its devices
NO_SCENARIO = ("syncsim: give the scenario with --scenario FILE "
               "(e.g. locust -f simulator/locust/locustfile.py --scenario scenarios/smoke.yaml)")


class FleetFull(Exception):
    """More Locust users of a class than the scenario has devices of it."""


class NotRunning(Exception):
    """The test's run could not start; its reason was said once."""


def scenario_path(argv: list[str]) -> Path | None:
    """--scenario from Locust's command line (needed at import: the user classes come from it)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--scenario")
    known, _ = parser.parse_known_args(argv)
    value = known.scenario or os.environ.get("SYNCSIM_SCENARIO")
    return Path(value) if value else None


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


def fingerprint(scenario: Scenario) -> dict[str, Any]:
    """What must match between a master's scenario and a worker's."""
    return {"name": scenario.name, "seed": scenario.seed, "classes": scenario.class_counts()}


class Bridge:
    """syncsim in one Locust process: its role(s), the engine loop, and Locust's side of both."""

    def __init__(self, scenario: Scenario, path: Path, users_given: bool = False) -> None:
        self.scenario = scenario
        self.path = path
        self.users_given = users_given  # -u on the command line: a constant count, not the waves
        self.fleet = build_fleet(scenario)
        self.environment: Environment | None = None
        self.engine: EngineLoop | None = None
        self.coordinator: Coordinator | None = None
        self.host: DeviceHost | None = None
        self.failed: str | None = None  # why the test could not run, when it could not

    @property
    def options(self) -> Any:
        assert self.environment is not None
        return self.environment.parsed_options

    def engine_loop(self) -> EngineLoop:
        if self.engine is None:
            self.engine = EngineLoop()
        return self.engine

    def send(self, kind: str, data: Any = None, to: str | None = None) -> None:
        assert self.environment is not None and self.environment.runner is not None
        self.environment.runner.send_message(f"syncsim_{kind}", data, to)

    def fleet_words(self) -> str:
        return ", ".join(f"{n} {name}" for name, n in self.scenario.class_counts().items())

    # --- Locust events ------------------------------------------------------------------------
    def init(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        runner = environment.runner
        if runner is None:
            return
        if not isinstance(runner, WorkerRunner):
            self.coordinator = Coordinator(self)
            self.coordinator.listen(runner)
            extend_web_ui(environment, self.coordinator)
        if not isinstance(runner, MasterRunner):
            self.host = DeviceHost(self)
            self.host.listen(runner)

    def test_start(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        if self.coordinator is not None:
            self.coordinator.test_start()

    def test_stop(self, environment: Environment, **_: Any) -> None:
        if self.coordinator is not None:
            self.coordinator.test_stop()

    def quitting(self, environment: Environment, **_: Any) -> None:
        if self.coordinator is not None:
            self.coordinator.close()
        if self.host is not None:
            self.host.close()
        if self.engine is not None:
            self.engine.close()
        if self.failed is not None and self.coordinator is not None:
            environment.process_exit_code = 2

    def fail(self, why: str) -> None:
        """The test cannot run: one line saying why; Locust stops and exits non-zero."""
        if self.failed is None:
            log.error("syncsim: %s", why)
        self.failed = why
        environment = self.environment
        if environment is not None:
            environment.process_exit_code = 2
            if environment.runner is not None and not isinstance(environment.runner, WorkerRunner):
                gevent.spawn(environment.runner.quit)


# --- the coordinator (master or only process) -----------------------------------------------------
class Coordinator:
    """The server, the run's clock, device leases, the quiet period's rounds and the report."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.run: FleetRun | None = None  # the primary run: server, clock, admin (it holds no devices)
        self.child: ChildServer | None = None
        self.pools: dict[str, deque[str]] = {}  # class -> free device names, in fleet order
        self.leased: dict[str, str] = {}  # device name -> worker node id
        self.workers: set[str] = set()  # workers told about this run
        self.rounds_done: dict[int, set[str]] = {}
        self.parts: dict[str, DevicePart] = {}
        self.answers = gevent.event.Event()
        self.result: RunResult | None = None
        self.t0 = 0.0
        self.live_records: list[SyncRecord] = []  # shipped by the device hosts every few seconds
        self.live_firsts: list[FirstSync] = []

    def listen(self, runner: Any) -> None:
        runner.register_message("syncsim_lease", self._on_lease)
        runner.register_message("syncsim_release", self._on_release)
        runner.register_message("syncsim_round_done", self._on_round_done)
        runner.register_message("syncsim_part", self._on_part)
        runner.register_message("syncsim_records", self._on_records)

    def server(self) -> Where | Target:
        b = self.bridge
        host = b.environment.host if b.environment is not None else None
        if not host:
            return "process"
        key = getattr(b.options, "admin_key", None)
        if not key:
            raise TargetError(f"--host {host}: give --admin-key, the key `syncsim serve` printed")
        return Target(host.rstrip("/"), key)

    def test_start(self) -> None:
        b = self.bridge
        if self.run is not None:  # the web UI's "new test": each test gets a fresh run and server
            self.test_stop()
        users = getattr(b.options, "num_users", None) if b.users_given else None
        if users and users > len(b.fleet):
            b.fail(f"{users} users is more than the scenario's fleet of {len(b.fleet)} devices "
                   f"({b.fleet_words()}); each Locust user is one device")
            return
        try:
            server = self.server()
            if server == "process":  # the embedded server, in a child process of this one
                self.child = ChildServer(b.path)
                server = Target(self.child.base_url, self.child.admin_key)
            run = FleetRun(b.scenario, server=server, out_root=Path(b.options.syncsim_out),
                           console=Console(stderr=True))
            b.engine_loop().run(run.__aenter__())
        except (TargetError, OSError, RuntimeError) as exc:
            self._close_child()
            b.fail(str(exc))
            return
        assert isinstance(server, Target)
        self.run, self.result, self.t0 = run, None, wall_s()
        self.pools = {c.name: deque(e.spec.name for e in b.fleet if e.spec.user_class == c.name)
                      for c in b.scenario.user_classes}
        self.leased.clear()
        self.rounds_done.clear()
        self.parts.clear()
        self.live_records, self.live_firsts = [], []
        runner = b.environment.runner if b.environment is not None else None
        self.workers = {c.id for c in runner.clients.ready + runner.clients.running + runner.clients.spawning} \
            if isinstance(runner, MasterRunner) else {"local"}
        b.send("run", {"url": server.url, "key": server.admin_key, "time_scale": run.clock.time_scale,
                       "now": run.clock.now(), "wall": time.time(), "origin": run.origin,
                       "scenario": fingerprint(b.scenario)})
        log.info("syncsim: %s, %d devices (%s), server %s, %d device host(s)", b.scenario.name, len(b.fleet),
                 b.fleet_words(), run.base_url, len(self.workers))

    def elapsed_s(self) -> float:
        """Scenario seconds since the run started (0 before)."""
        run = self.run
        return run.clock.now() - run.origin if run is not None else 0.0

    # --- the live table (web UI) ---------------------------------------------------------------
    def _on_records(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.live_records += [SyncRecord(**r) for r in msg.data["records"]]
        self.live_firsts += [FirstSync(**f) for f in msg.data["firsts"]]

    def table(self) -> list[dict[str, Any]]:
        """Per user class, the figures of syncsim's report over every sync so far."""
        if self.result is not None and self.run is None:
            classes = self.result.summary["classes"]
        else:
            classes = summarize(self.live_records, [], first_syncs=self.live_firsts)["classes"]
        return [class_row(name, c) for name, c in classes.items()]

    # --- leases -------------------------------------------------------------------------------
    def _on_lease(self, environment: Environment, msg: Any, **_: Any) -> None:
        cls, req = msg.data["class"], msg.data["req"]
        pool = self.pools.get(cls)
        if self.run is None:
            self.bridge.send("leased", {"req": req, "error": "the test's run is not running"}, msg.node_id)
        elif not pool:
            why = (f"more {cls} users than the scenario's {self.bridge.scenario.class_counts().get(cls, 0)} {cls} "
                   f"devices; each Locust user is one device (fleet: {self.bridge.fleet_words()})")
            self.bridge.fail(why)
            self.bridge.send("leased", {"req": req, "error": why}, msg.node_id)
        else:
            name = pool.popleft()
            self.leased[name] = msg.node_id
            self.bridge.send("leased", {"req": req, "name": name}, msg.node_id)

    def _on_release(self, environment: Environment, msg: Any, **_: Any) -> None:
        name = msg.data["name"]
        if self.leased.pop(name, None) is not None:
            cls = next(e.spec.user_class for e in self.bridge.fleet if e.spec.name == name)
            self.pools[cls].appendleft(name)

    # --- the end of the test ----------------------------------------------------------------------
    def _on_round_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.rounds_done.setdefault(int(msg.data["n"]), set()).add(msg.node_id)
        self.answers.set()

    def _on_part(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.parts[msg.node_id] = DevicePart.from_wire(msg.data)
        self.answers.set()

    def _await(self, done: Callable[[], bool], timeout_s: float, what: str) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("syncsim: %s: no answer from some workers within %.0f s", what, timeout_s)
                return False
            self.answers.clear()
            self.answers.wait(min(left, 1.0))
        return True

    def _round_complete(self, n: int) -> bool:
        return self.workers <= self.rounds_done.get(n, set())

    def test_stop(self) -> None:
        b, run = self.bridge, self.run
        if run is None:
            return
        self.run = None
        engine = b.engine_loop()
        log.info("syncsim: test stopped; quiet period (final syncs) on %d device host(s), then the end-of-run check",
                 len(self.workers))
        try:
            engine.run(run.admin.back_office(False))
            limit = run.clock.to_real(b.scenario.quiet_period_s) + ANSWER_TIMEOUT_S
            for n in range(1, QUIET_ROUNDS + 1):
                b.send("round", {"n": n})
                self._await(functools.partial(self._round_complete, n), limit, f"final syncs, round {n}")
            b.send("hand_in")
            self._await(lambda: self.workers <= set(self.parts), ANSWER_TIMEOUT_S, "handing in devices")
            missing = sorted(self.workers - set(self.parts))
            part = merge([self.parts[w] for w in sorted(self.parts)])
            result = engine.run(check_and_report(b.scenario, run.admin, part, run.cost(), run.out_root, run.console))
            if missing:
                log.error("syncsim: %d worker(s) never handed in their devices: the report lacks them", len(missing))
            result.summary["locust"] = {"device_hosts": [
                {"node": w, "devices": sorted(e.name for e in p.ends), "syncs": len(p.records)}
                for w, p in sorted(self.parts.items())], "missing_hosts": missing}
            _rewrite_summary(result)
        finally:
            with contextlib.suppress(Exception):
                engine.run(run.__aexit__(None, None, None))
            self._close_child()
        self.result = result
        passed = result.passed and not missing
        if b.environment is not None:
            b.environment.process_exit_code = 0 if passed else 1
        log.info("syncsim: end-of-run check %s; reports in %s", "passed" if passed else "FAILED", result.out_dir)

    def _close_child(self) -> None:
        if self.child is not None:
            self.child.close()
            self.child = None

    def close(self) -> None:
        if self.run is not None:
            self.test_stop()
        self._close_child()


def class_row(name: str, c: dict[str, Any]) -> dict[str, Any]:
    """One user class as a row of the syncsim tab (seconds and percentages as text)."""
    def s(v: Any) -> str:
        return "–" if v is None else f"{v:.2f}"

    first, delta = c.get("first_sync") or {}, c.get("delta_sync") or {}
    causes = c.get("failures_by_cause") or {}
    unfinished = (c.get("first_sync_detail") or {}).get("unfinished", {}).get("count", 0)
    return {"user_class": name, "devices": c.get("devices", 0), "syncs": c.get("syncs", 0),
            "first_p50": s(first.get("p50")), "first_p95": s(first.get("p95")), "first_p99": s(first.get("p99")),
            "unfinished": unfinished, "delta_p95": s(delta.get("p95")),
            "conflicts": f"{100 * (c.get('conflict_rate') or 0):.2f}%",
            "rejections": f"{100 * (c.get('rejection_rate') or 0):.2f}%",
            "failures": ", ".join(f"{k} {n}" for k, n in sorted(causes.items())) or "–"}


TABLE_COLUMNS = [("user_class", "User class"), ("devices", "Devices"), ("syncs", "Syncs"),
                 ("first_p50", "First sync p50 (s)"), ("first_p95", "p95 (s)"), ("first_p99", "p99 (s)"),
                 ("unfinished", "Unfinished"), ("delta_p95", "Delta p95 (s)"), ("conflicts", "Conflicts"),
                 ("rejections", "Rejections"), ("failures", "Failures by cause")]


def extend_web_ui(environment: Environment, coordinator: Coordinator) -> None:
    """A syncsim tab in Locust's web UI (the per-class table, live) and syncsim's report under
    /syncsim/report once the test has stopped."""
    from flask import Response, request

    web_ui = environment.web_ui
    app = web_ui.app if web_ui is not None else None
    if web_ui is None or app is None:
        return
    web_ui.template_args["extended_tabs"] = [{"title": "syncsim", "key": "syncsim"}]
    web_ui.template_args["extended_tables"] = [
        {"key": "syncsim", "structure": [{"key": k, "title": t} for k, t in TABLE_COLUMNS]}]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "/syncsim/report", "title": "syncsim report (HTML; written at test stop)"}]

    @app.after_request
    def _with_syncsim(response: Response) -> Response:
        if request.path == "/stats/requests" and response.is_json:
            import json

            body = response.get_json()
            body["extended_stats"] = [{"key": "syncsim", "data": coordinator.table()}]
            response.set_data(json.dumps(body))
        return response

    @app.route("/syncsim/report")
    def _report() -> Response:
        result = coordinator.result
        page = result.out_dir / "report.html" if result is not None else None
        if page is None or not page.exists():
            return Response("syncsim's report is written when the test stops.", status=404, mimetype="text/plain")
        return Response(page.read_bytes(), mimetype="text/html")


def _rewrite_summary(result: RunResult) -> None:
    import orjson

    path = result.out_dir / "summary.json"
    if path.exists():
        path.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))


# --- the device host (worker or only process) ------------------------------------------------------
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
        runner.register_message("syncsim_run", self._on_run, concurrent=True)
        runner.register_message("syncsim_leased", self._on_leased)
        runner.register_message("syncsim_round", self._on_round, concurrent=True)
        runner.register_message("syncsim_hand_in", self._on_hand_in, concurrent=True)

    def _on_run(self, environment: Environment, msg: Any, **_: Any) -> None:
        b, d = self.bridge, msg.data
        self.ready.clear()
        try:
            if d["scenario"] != fingerprint(b.scenario):
                raise NotRunning(f"this worker's scenario ({b.path}: {fingerprint(b.scenario)}) is not the master's "
                                 f"({d['scenario']}); start every worker with the master's --scenario")
            clock = RealClock.joining(d["time_scale"], d["now"], d["wall"])
            run = FleetRun(b.scenario, server=Target(d["url"], d["key"]), clock=clock, primary=False,
                           origin=d["origin"], console=Console(stderr=True, quiet=True))
            b.engine_loop().run(run.__aenter__())
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
        self.bridge.send("lease", {"class": user_class, "req": req})
        try:
            data = answer.get(timeout=ANSWER_TIMEOUT_S)
        finally:
            self.leases.pop(req, None)
        if "error" in data:
            raise FleetFull(data["error"])
        return self.by_name[data["name"]]

    def _on_leased(self, environment: Environment, msg: Any, **_: Any) -> None:
        answer = self.leases.get(msg.data["req"])
        if answer is not None:
            answer.set(msg.data)

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
        self.bridge.send("release", {"name": entry.spec.name})

    # --- the end of the test ----------------------------------------------------------------------
    def _on_round(self, environment: Environment, msg: Any, **_: Any) -> None:
        run = self.run
        if run is not None:
            async def final_syncs() -> None:
                await _cancelled(list(self.tasks.values()))  # devices of users still running stop here
                self.tasks.clear()
                await run.quiet_round()

            self.bridge.engine_loop().run(final_syncs())
        self.bridge.send("round_done", {"n": msg.data["n"]})

    def _on_hand_in(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._ship()
        run, self.run = self.run, None
        part = DevicePart()
        if run is not None:
            engine = self.bridge.engine_loop()
            part = engine.run(run.hand_in())
            with contextlib.suppress(Exception):
                engine.run(run.__aexit__(None, None, None))
        for g in self.greenlets:
            g.kill(block=False)
        self._drain()
        for first in (f for f in part.first_syncs if not f.finished):
            self._fire(unfinished_entry(first))
        self.bridge.send("part", part.to_wire())

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
            self.bridge.send("records", {"records": [asdict(r) for r in records[r0:] if not r.final],
                                         "firsts": [asdict(f) for f in firsts[f0:]]})

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
        host = self.bridge.host
        if host is None or self.bridge.failed is not None:
            return
        try:
            self.entry = host.lease(self.scenario_class)
        except FleetFull as exc:
            self.bridge.fail(str(exc))
            return
        except (NotRunning, gevent.Timeout):
            return  # the run did not start (said once): stand by
        host.start_device(self.entry)

    def on_stop(self) -> None:
        entry, host = self.entry, self.bridge.host
        if entry is not None and host is not None:
            host.stop_device(entry)
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
    class RolloutShape(LoadTestShape):
        use_common_options = True

        def tick(self) -> tuple[int, float] | tuple[int, float, list[type[User]] | None] | None:
            options, coordinator = bridge.options, bridge.coordinator
            if bridge.failed is not None or coordinator is None:
                return None
            t = coordinator.elapsed_s()
            run_time = getattr(options, "run_time", None)
            if (run_time and self.get_run_time() >= run_time) or t >= bridge.scenario.duration_s:
                return None
            if bridge.users_given and getattr(options, "num_users", None):
                return int(options.num_users), float(options.spawn_rate or 1)
            count, only = wave_target(bridge.fleet, t, self.runner.user_count if self.runner else 0)
            return count, float(max(1, count)), [classes[n] for n in only] if only else None

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
        group.add_argument("--scenario", help="the syncsim scenario file (required; every worker needs the master's)",
                           env_var="SYNCSIM_SCENARIO")
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
