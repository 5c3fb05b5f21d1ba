"""Plant a bug and run its scenario in virtual time; run the whole catalog, two runs at a time.

Each run is a child process (forked where the platform allows, else spawned), so a planted bug
never outlives its run, and runs go side by side on the machine's cores. A virtual-time run is
deterministic, so a bug caught once is caught every time.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, cast

from mutants.bugs import Bug
from mutants.catalog import MUTANTS, SCENARIOS, Mutant

ROOT = Path(__file__).resolve().parent.parent
CHECK = "end_of_run_check"  # the end-of-run check, named beside the ledger's invariants


class PlantError(Exception):
    """A catalog line names a place that does not exist (the code moved): fix the line."""


def plant(where: str, bug: Bug) -> Callable[[], None]:
    """Replace `module:Attr.path` with `bug(original)`, also in every loaded module that imported a
    module-level function by name; returns a function that puts it back. Import the code under
    test before planting, so those modules are loaded (run_one does)."""
    module_name, _, path = where.partition(":")
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PlantError(f"{where}: no module {module_name!r} ({exc})") from None
    *parents, name = path.split(".")
    for part in parents:
        if not hasattr(owner, part):
            raise PlantError(f"{where}: {module_name} has no {part!r}")
        owner = getattr(owner, part)
    if name not in vars(owner):
        raise PlantError(f"{where}: {getattr(owner, '__name__', owner)} has no {name!r} of its own")
    original = vars(owner)[name]
    owners = [owner]
    if isinstance(owner, types.ModuleType):  # also where it was imported by name (`from m import f`)
        owners += [m for m in list(sys.modules.values())
                   if m is not owner and isinstance(m, types.ModuleType) and vars(m).get(name) is original]
    planted = bug(original)
    for o in owners:
        setattr(o, name, planted)

    def put_back() -> None:
        for o in owners:
            setattr(o, name, original)
    return put_back


@dataclass(slots=True)
class Outcome:
    """One run: the scenario, the bug planted (None: the run without a bug), what failed."""

    scenario: str
    mutant: str | None
    violations: dict[str, int] = field(default_factory=dict)  # invariant -> violations (only those > 0)
    examples: dict[str, str] = field(default_factory=dict)  # invariant -> its first example
    error: str | None = None  # the run itself failed (a traceback's last line)
    wall_s: float = 0.0

    @property
    def clean(self) -> bool:
        return self.error is None and not self.violations


def scenario_of(key: str) -> Any:
    from simulator import api

    path, changes = SCENARIOS[key]
    scenario = api.load(ROOT / "scenarios" / path)
    return api.change(scenario, changes) if changes else scenario


def run_one(scenario_key: str, mutant_name: str | None) -> Outcome:
    """Run `scenario_key` with the named bug planted (in this process: call it in a child)."""
    from rich.console import Console

    from simulator.runner import run_blocking

    out = Outcome(scenario_key, mutant_name)
    start = time.perf_counter()
    undo: list[Callable[[], None]] = []
    try:
        scenario = scenario_of(scenario_key)
        if mutant_name is not None:
            mutant = by_name(mutant_name)
            for where, bug in ((mutant.where, mutant.bug), *mutant.also):
                undo.append(plant(where, bug))
        with TemporaryDirectory() as tmp:
            result = run_blocking(scenario, Path(tmp), progress=False, console=Console(quiet=True), report=False)
        summary = result.summary
        for key, inv in summary["ledger"]["invariants"].items():
            if inv["violations"]:
                out.violations[key] = inv["violations"]
                out.examples[key] = (inv["examples"] or [""])[0]
        check = summary[CHECK]
        if not check["passed"]:
            failing = check["failing_devices"]
            out.violations[CHECK] = len(failing) + len(check["unfinished_devices"])
            out.examples[CHECK] = (f"{failing[0]['device']}: {(failing[0]['examples'] or [''])[0]}" if failing
                                   else f"unfinished: {', '.join(check['unfinished_devices'][:3])}")
    except PlantError:
        raise
    except BaseException as exc:  # a bug that crashes the run is reported as such, with where it broke
        out.error = traceback.format_exception_only(type(exc), exc)[-1].strip()
    finally:
        for put_back in reversed(undo):
            put_back()
    out.wall_s = time.perf_counter() - start
    return out


def by_name(name: str) -> Mutant:
    for mutant in MUTANTS:
        if mutant.name == name:
            return mutant
    raise KeyError(f"no mutant named {name!r}")


def runs(mutants: tuple[Mutant, ...]) -> list[tuple[str, str | None]]:
    """The runs to make: each scenario the mutants use, without a bug, then each mutant."""
    scenarios = list(dict.fromkeys(m.scenario for m in mutants))
    return [(s, None) for s in scenarios] + [(m.scenario, m.name) for m in mutants]


def run_all(mutants: tuple[Mutant, ...] = MUTANTS, jobs: int | None = None,
            progress: Callable[[Outcome, int, int], None] | None = None) -> Iterator[Outcome]:
    """Every run of `runs(mutants)` in child processes, `jobs` at a time (default: the machine's
    cores); yields outcomes as they end. Each child is started from this thread, which is the
    process's only one (a pool's helper threads forking its workers can hand a child a lock some
    other thread held: a child that never starts)."""
    todo = runs(mutants)
    for m in mutants:  # a stale line fails before any run
        for where, bug in ((m.where, m.bug), *m.also):
            plant(where, bug)()
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    waiting = list(reversed(todo))
    running: dict[Any, tuple[Any, tuple[str, str | None]]] = {}  # reader -> (process, run)
    done = 0
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                args = waiting.pop()
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(writer, *args), daemon=True)
                process.start()
                writer.close()
                running[reader] = (process, args)
            for ready in multiprocessing.connection.wait(list(running)):
                process, (scenario, mutant) = running.pop(ready)
                conn = cast(multiprocessing.connection.Connection, ready)
                try:
                    outcome: Outcome = conn.recv()
                except EOFError:
                    outcome = Outcome(scenario, mutant, error=f"the run's process died (exit {process.exitcode})")
                conn.close()
                process.join()
                done += 1
                if progress is not None:
                    progress(outcome, done, len(todo))
                yield outcome
    finally:
        for process, _ in running.values():
            process.kill()


def _child(writer: Any, scenario: str, mutant: str | None) -> None:
    writer.send(run_one(scenario, mutant))
    writer.close()
