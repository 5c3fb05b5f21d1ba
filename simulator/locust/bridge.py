"""syncsim in one Locust process: the scenario from the command line, the process's role(s), its
engine loop, and how it sends messages (messages.py). Each Locust process plays one or both of two
roles, which talk only through Locust's messages (in one process Locust delivers them locally, so one
process and master/worker mode run the same code): the coordinator (coordinator.py: the master, or
the only process) and the device host (host.py: a worker, or the only process)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from pydantic import ValidationError

from simulator.fleet import build_fleet
from simulator.locust.loop import EngineLoop
from simulator.locust.messages import Message
from simulator.scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    from simulator.locust.coordinator import Coordinator
    from simulator.locust.host import DeviceHost

log = logging.getLogger("syncsim")
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
        _usage_error(NO_SCENARIO)
    try:
        return path, load_scenario(path)
    except (ScenarioError, ValidationError, OSError) as exc:
        _usage_error(f"syncsim: {exc}")


def _usage_error(line: str) -> NoReturn:
    """Bad input on the command line: the line on stderr, exit status 2 (as `syncsim run`)."""
    print(line, file=sys.stderr)
    sys.exit(2)


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

    def send(self, message: Message, to: str | None = None) -> None:
        """Send a message to the coordinator (from a host), to every host, or to host `to`."""
        assert self.environment is not None and self.environment.runner is not None
        self.environment.runner.send_message(f"syncsim_{message.kind}", message.data(), to)

    def fleet_words(self) -> str:
        return ", ".join(f"{n} {name}" for name, n in self.scenario.class_counts().items())

    # --- Locust events ------------------------------------------------------------------------
    def init(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        runner = environment.runner
        if runner is None:
            return
        if not isinstance(runner, WorkerRunner):
            from simulator.locust.coordinator import Coordinator
            from simulator.locust.webui import extend_web_ui

            self.coordinator = Coordinator(self)
            self.coordinator.listen(runner)
            extend_web_ui(environment, self.coordinator)
        if not isinstance(runner, MasterRunner):
            from simulator.locust.host import DeviceHost

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
