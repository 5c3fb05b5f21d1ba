"""The coordinator (the master, or the only process): it starts the embedded server in a child
process (or uses `--host` with `--admin-key`), starts the run on its clock, tells every device host
where the server is and what the run's clock reads (`Run`), leases devices to users (`Lease`,
`Leased`: distinct identities over all hosts; more users than devices is an error), and at test stop
takes the run's end-of-run steps (FleetRun.quiet_begins, then the quiet period's rounds on every
host, `Round` / `RoundDone`, their devices handed in, `HandIn` / `Part`, FleetRun.report of the
merged parts) and sets Locust's exit code from the check."""

from __future__ import annotations

import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent.event
from locust.env import Environment
from locust.runners import MasterRunner
from rich.console import Console

from simulator.locust.bridge import ANSWER_TIMEOUT_S, Bridge, fingerprint, log
from simulator.locust.messages import HandIn, Lease, Leased, Part, Records, Release, Round, RoundDone, Run
from simulator.locust.server import ChildServer
from simulator.locust.webui import class_row, rewrite_summary
from simulator.metrics import FirstSync, SyncRecord
from simulator.parts import DevicePart, merge
from simulator.reports import summarize
from simulator.runner import QUIET_ROUNDS, FleetRun, RunResult
from simulator.target import Target, TargetError, Where


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
        self.live_records: list[SyncRecord] = []  # shipped by the device hosts every few seconds
        self.live_firsts: list[FirstSync] = []

    def listen(self, runner: Any) -> None:
        for message, handler in ((Lease, self._on_lease), (Release, self._on_release), (RoundDone, self._on_round_done),
                                 (Part, self._on_part), (Records, self._on_records)):
            runner.register_message(f"syncsim_{message.kind}", handler)

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
            b.engine_loop().run(run.start())
        except (TargetError, OSError, RuntimeError) as exc:
            self._close_child()
            b.fail(str(exc))
            return
        assert isinstance(server, Target)
        self.run, self.result = run, None
        self.pools = {c.name: deque(e.spec.name for e in b.fleet if e.spec.user_class == c.name)
                      for c in b.scenario.user_classes}
        self.leased.clear()
        self.rounds_done.clear()
        self.parts.clear()
        self.live_records, self.live_firsts = [], []
        runner = b.environment.runner if b.environment is not None else None
        self.workers = {c.id for c in runner.clients.ready + runner.clients.running + runner.clients.spawning} \
            if isinstance(runner, MasterRunner) else {"local"}
        b.send(Run(server.url, server.admin_key, run.clock.time_scale, run.clock.now(), time.time(), run.origin,
                   fingerprint(b.scenario)))
        log.info("syncsim: %s, %d devices (%s), server %s, %d device host(s)", b.scenario.name, len(b.fleet),
                 b.fleet_words(), run.base_url, len(self.workers))

    def elapsed_s(self) -> float:
        """Scenario seconds since the run started (0 before)."""
        run = self.run
        return run.clock.now() - run.origin if run is not None else 0.0

    # --- the live table (web UI) ---------------------------------------------------------------
    def _on_records(self, environment: Environment, msg: Any, **_: Any) -> None:
        records = Records.of(msg)
        self.live_records += [SyncRecord(**r) for r in records.records]
        self.live_firsts += [FirstSync(**f) for f in records.firsts]

    def table(self) -> list[dict[str, Any]]:
        """Per user class, the figures of syncsim's report over every sync so far."""
        if self.result is not None and self.run is None:
            classes = self.result.summary["classes"]
        else:
            classes = summarize(self.live_records, [], first_syncs=self.live_firsts)["classes"]
        return [class_row(name, c) for name, c in classes.items()]

    # --- leases -------------------------------------------------------------------------------
    def _on_lease(self, environment: Environment, msg: Any, **_: Any) -> None:
        lease = Lease.of(msg)
        cls, req = lease.user_class, lease.req
        pool = self.pools.get(cls)
        if self.run is None:
            self.bridge.send(Leased(req, error="the test's run is not running"), msg.node_id)
        elif not pool:
            why = (f"more {cls} users than the scenario's {self.bridge.scenario.class_counts().get(cls, 0)} {cls} "
                   f"devices; each Locust user is one device (fleet: {self.bridge.fleet_words()})")
            self.bridge.fail(why)
            self.bridge.send(Leased(req, error=why), msg.node_id)
        else:
            name = pool.popleft()
            self.leased[name] = msg.node_id
            self.bridge.send(Leased(req, name=name), msg.node_id)

    def _on_release(self, environment: Environment, msg: Any, **_: Any) -> None:
        name = Release.of(msg).name
        if self.leased.pop(name, None) is not None:
            cls = next(e.spec.user_class for e in self.bridge.fleet if e.spec.name == name)
            self.pools[cls].appendleft(name)

    # --- the end of the test ----------------------------------------------------------------------
    def _on_round_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.rounds_done.setdefault(RoundDone.of(msg).n, set()).add(msg.node_id)
        self.answers.set()

    def _on_part(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.parts[msg.node_id] = DevicePart.from_wire(Part.of(msg).wire)
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
        try:  # FleetRun.finish's steps, with the rounds and the hand-in on every device host
            engine.run(run.quiet_begins())
            limit = run.clock.to_real(b.scenario.quiet_period_s) + ANSWER_TIMEOUT_S
            for n in range(1, QUIET_ROUNDS + 1):
                b.send(Round(n))
                self._await(functools.partial(self._round_complete, n), limit, f"final syncs, round {n}")
            b.send(HandIn())
            self._await(lambda: self.workers <= set(self.parts), ANSWER_TIMEOUT_S, "handing in devices")
            missing = sorted(self.workers - set(self.parts))
            result = engine.run(run.report(merge([self.parts[w] for w in sorted(self.parts)])))
            if missing:
                log.error("syncsim: %d worker(s) never handed in their devices: the report lacks them", len(missing))
            result.summary["locust"] = {"device_hosts": [
                {"node": w, "devices": sorted(e.name for e in p.ends), "syncs": len(p.records)}
                for w, p in sorted(self.parts.items())], "missing_hosts": missing}
            rewrite_summary(result)
        finally:
            with contextlib.suppress(Exception):
                engine.run(run.close())
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
