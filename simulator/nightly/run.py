"""`syncsim bench`: run one scenario at several fleet sizes (each on a fresh server, on a fresh event
loop), `repeat` times each, and keep every figure of `metrics.extract` per run, with medians and
spreads per size. Long work shows progress: which size, which repeat, and the time left.

Runs are in virtual time by default: deterministic, so a baseline compares like with like and a
difference is a change in the system, never load on the machine (`--repeat` then only repeats the
same numbers). `clock="real"` runs against the server in its own process in real time."""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from simulator.clock import RealClock, wall_s
from simulator.nightly.metrics import extract
from simulator.runner import run_blocking
from simulator.scenario import Scenario, load_scenario
from simulator.target import Where


@dataclass(slots=True)
class SizeResult:
    """One fleet size: every run's metrics, their median and spread, and whether a run was saturated
    (its numbers then include the generator's own delay: not comparable) or failed its checks."""

    devices: int
    runs: list[dict[str, float | None]] = field(default_factory=list)
    saturated: bool = False
    checks_passed: bool = True
    wall_s: list[float] = field(default_factory=list)

    @property
    def median(self) -> dict[str, float | None]:
        return {k: _median([r.get(k) for r in self.runs]) for k in self.runs[0]} if self.runs else {}

    @property
    def spread(self) -> dict[str, float | None]:
        """(max - min) / median per metric over the repeats (None with one run or a zero median)."""
        return {k: _spread([r.get(k) for r in self.runs]) for k in self.runs[0]} if self.runs else {}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.median, "spread": self.spread}


def _values(xs: list[float | None]) -> list[float]:
    return [float(x) for x in xs if x is not None]


def _median(xs: list[float | None]) -> float | None:
    v = _values(xs)
    return statistics.median(v) if v else None


def _spread(xs: list[float | None]) -> float | None:
    v = _values(xs)
    if len(v) < 2:
        return None
    mid = statistics.median(v)
    return (max(v) - min(v)) / abs(mid) if mid else None


@dataclass(slots=True)
class Bench:
    """A whole benchmark: the scenario, the sizes measured, and where it ran."""

    scenario: str
    seed: int
    sizes: list[SizeResult]
    clock: str = "real"  # "virtual": deterministic runs; a baseline of the other clock is not comparable
    fingerprint: str = ""  # scenario_fingerprint of the scenario file measured ("": an older bench.json)
    interrupted: str | None = None  # SIGINT or SIGTERM: stopped early; `sizes` are the sizes done
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=lambda: {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()})

    def size(self, devices: int) -> SizeResult | None:
        return next((s for s in self.sizes if s.devices == devices), None)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "seed": self.seed, "clock": self.clock, "fingerprint": self.fingerprint,
                "interrupted": self.interrupted,
                "created": self.created, "machine": self.machine, "sizes": [s.to_dict() for s in self.sizes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bench:
        sizes = [SizeResult(s["devices"], s["runs"], s["saturated"], s["checks_passed"], s.get("wall_s", []))
                 for s in data["sizes"]]
        return cls(data["scenario"], data["seed"], sizes, data.get("clock", "real"), data.get("fingerprint", ""),
                   data.get("interrupted"), data.get("created", ""), data.get("machine", {}))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _cpus() -> int:
    return os.cpu_count() or 1


def measure(path: Path, devices: int, out: Path, console: Console, label: str,
            server: Where = "virtual") -> tuple[dict[str, Any], float]:
    """One run of the scenario at `devices`; returns its summary and its wall seconds."""
    scenario = load_scenario(path, devices=devices)
    start = wall_s()
    how = ("in virtual time" if server == "virtual"
           else f"(~{RealClock(scenario.time_scale).to_real(scenario.duration_s):.0f} s of devices at "
                f"x{scenario.time_scale:g})")
    console.print(f"[bold]{label}[/]: {devices:,} devices, {scenario.duration_s:g} s of scenario time {how}, "
                  "then the quiet period")
    result = run_blocking(scenario, out, server=server, progress=True, console=console, report=False)
    return result.summary, wall_s() - start


def run_bench(path: Path, sizes: list[int], repeat: int, out: Path, console: Console,
              server: Where = "virtual") -> Bench:
    """Every size, `repeat` times, in order; prints progress with the time left. A Ctrl-C or SIGTERM
    (during a run, or a Ctrl-C between runs) ends the bench with the sizes done (`Bench.interrupted`)."""
    scenario: Scenario = load_scenario(path)
    results: list[SizeResult] = []
    total, done, spent = len(sizes) * repeat, 0, 0.0
    interrupted: str | None = None
    for devices in sizes:
        if interrupted:
            break
        size = SizeResult(devices)
        for r in range(repeat):
            left = f", about {_duration(spent / done * (total - done))} left" if done else ""
            try:
                summary, took = measure(path, devices, out / f"{devices}-devices" / f"run-{r + 1}", console,
                                        f"[{done + 1}/{total}{left}] size {devices:,}, run {r + 1}/{repeat}", server)
            except KeyboardInterrupt:
                interrupted = "SIGINT"
                break
            if summary.get("interrupted"):
                interrupted = str(summary["interrupted"])
                break
            size.runs.append(extract(summary))
            size.wall_s.append(round(took, 1))
            size.saturated |= bool(summary.get("generator_saturated"))
            size.checks_passed &= bool(summary["end_of_run_check"]["passed"] and summary["ledger"]["passed"])
            done, spent = done + 1, spent + took
            console.print(f"  done in {took:.0f} s" + ("  [yellow]generator saturated[/]" if summary.get(
                "generator_saturated") else "") + ("" if size.checks_passed else "  [red]checks FAILED[/]"))
        if not interrupted:
            results.append(size)
    return Bench(scenario.name, scenario.seed, results, clock="real" if server != "virtual" else "virtual",
                 fingerprint=scenario_fingerprint(scenario), interrupted=interrupted)


def scenario_fingerprint(scenario: Scenario) -> str:
    """What a baseline must have measured to be compared with: every field of the scenario (its
    fleet sizes aside: each size scales it), as the first 16 hex digits of a SHA-256."""
    data = scenario.model_dump(mode="json")
    data.pop("devices", None)
    for c in data["user_classes"]:
        c.pop("count", None)
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
