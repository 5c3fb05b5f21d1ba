"""syncsim from Python (docs/python.md): load or build a scenario, change it in code, run it, read the
summary as objects, and sweep one field over a list of values.

    from simulator import api

    scenario = api.load("scenarios/smoke.yaml")
    scenario = api.change(scenario, {"user_classes[technician].profile[msdyn_workorder].filter": "owner"})
    result = api.run(scenario)
    print(result.classes["technician"].first_sync_p95, result.passed)

    table = api.sweep(scenario, "user_classes[technician].profile[msdyn_workorder].days", [7, 30, 90],
                      metrics=["first_sync_p95", "rows_per_device"])
    print(table.text())

A field path is dotted; `[key]` picks a list item by its name (`name`, `table` or `logical_name`) or
by its index. Every changed scenario is validated again, with the same errors as a scenario file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from simulator.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from simulator.target import Target

__all__ = ["ClassFigures", "Result", "Scenario", "ScenarioError", "Sweep", "Target", "build", "change", "load",
           "run", "sweep"]

_SEGMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<key>[^\]]+)\])?$")
_ITEM_KEYS = ("name", "table", "logical_name")


def load(path: str | Path, **overrides: Any) -> Scenario:
    """A scenario file (as `syncsim run` reads it); `overrides` replace top-level fields (seed, devices...)."""
    return load_scenario(path, **overrides)


def build(data: dict[str, Any]) -> Scenario:
    """A scenario from a mapping with the fields of a scenario file (docs/scenarios.md)."""
    return parse_scenario(data)


def change(scenario: Scenario, changes: dict[str, Any]) -> Scenario:
    """A copy of the scenario with each field path set to its value, validated again."""
    data = scenario.model_dump(mode="json", exclude_none=True)
    for path, value in changes.items():
        _set(data, path, value)
    return parse_scenario(data, f"<{scenario.name} changed>")


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node: Any = data
    segments = path.split(".")
    for i, segment in enumerate(segments):
        m = _SEGMENT.match(segment)
        if m is None:
            raise ScenarioError(f"field path {path!r}: {segment!r} is not a field name (optionally with [key])")
        name, key, last = m.group("name"), m.group("key"), i == len(segments) - 1
        if not isinstance(node, dict):
            raise ScenarioError(f"field path {path!r}: {'.'.join(segments[:i])} is not a mapping")
        if key is None:
            if last:
                node[name] = value
                return
            node = node.setdefault(name, {})
            continue
        items = node.get(name)
        if not isinstance(items, list):
            raise ScenarioError(f"field path {path!r}: {name} is not a list")
        index = _pick(items, key, path)
        if last:
            items[index] = value
            return
        node = items[index]


def _pick(items: list[Any], key: str, path: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if -len(items) <= index < len(items):
            return index % len(items)
    for index, item in enumerate(items):
        if isinstance(item, dict) and any(item.get(k) == key for k in _ITEM_KEYS):
            return index
    names = [str(next((item.get(k) for k in _ITEM_KEYS if isinstance(item, dict) and k in item), i))
             for i, item in enumerate(items)]
    raise ScenarioError(f"field path {path!r}: no item {key!r} (there are: {', '.join(names) or 'none'})")


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """One user class's figures from a run's summary (seconds, shares of uploaded operations)."""

    devices: int
    syncs: int
    first_sync_p50: float | None
    first_sync_p95: float | None
    first_sync_p99: float | None
    first_sync_unfinished: int
    delta_sync_p95: float | None
    conflict_rate: float
    rejection_rate: float
    failures_by_cause: dict[str, int]
    rows_per_device: float | None

    @classmethod
    def from_summary(cls, c: dict[str, Any]) -> ClassFigures:
        first, delta = c.get("first_sync") or {}, c.get("delta_sync") or {}
        detail = (c.get("first_sync_detail") or {}).get("unfinished") or {}
        return cls(c.get("devices", 0), c.get("syncs", 0), first.get("p50"), first.get("p95"), first.get("p99"),
                   int(detail.get("count", 0)), delta.get("p95"), float(c.get("conflict_rate") or 0),
                   float(c.get("rejection_rate") or 0), dict(c.get("failures_by_cause") or {}),
                   (c.get("rows_per_device") or {}).get("p50"))


@dataclass(frozen=True, slots=True)
class Result:
    """A finished run: where its reports are, whether its check and ledger passed, its figures."""

    out_dir: Path
    passed: bool
    summary: dict[str, Any]
    classes: dict[str, ClassFigures]

    @property
    def generator_saturated(self) -> bool:
        return bool(self.summary.get("generator_saturated"))


def run(scenario: Scenario | str | Path, *, out: str | Path = "reports", clock: str = "virtual",
        target: Target | None = None, in_process: bool = False, quiet: bool = True) -> Result:
    """Run the scenario as `syncsim run` does and return its figures: in virtual time by default
    (deterministic: the same scenario and seed give the same figures); `clock="real"` in real time
    against the embedded server in its own process (`in_process` for one event loop); `target` for a
    running `syncsim serve` (real time). `quiet` keeps the console tables and progress out (the
    report files are written either way)."""
    from simulator.runner import run_blocking

    if clock not in ("virtual", "real"):
        raise ValueError(f"clock {clock!r}: choose 'virtual' or 'real'")
    s = scenario if isinstance(scenario, Scenario) else load(scenario)
    where: Any = target if target is not None else (
        "in_process" if in_process else "process" if clock == "real" else "virtual")
    console = Console(stderr=True, quiet=quiet)
    done = run_blocking(s, Path(out), server=where, progress=not quiet, console=console, report=not quiet)
    classes = {name: ClassFigures.from_summary(c) for name, c in done.summary["classes"].items()}
    return Result(done.out_dir, done.passed, done.summary, classes)


@dataclass(slots=True)
class Sweep:
    """One scenario run over values of one field: per value, each class's chosen metrics."""

    path: str
    metrics: list[str]
    values: list[Any] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (value, class): the value, the class and each metric."""
        out = []
        for value, result in zip(self.values, self.results, strict=True):
            for name, figures in result.classes.items():
                out.append({"value": value, "user_class": name, "passed": result.passed,
                            **{m: getattr(figures, m) for m in self.metrics}})
        return out

    def text(self) -> str:
        """The rows as an aligned plain-text table."""
        head = ["value", "user_class", *self.metrics, "passed"]
        body = [[_cell(r[h]) for h in head] for r in self.rows()]
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
        return "\n".join(lines)


def _cell(v: Any) -> str:
    """A figure as the table shows it: whole numbers whole; otherwise digits that mean something
    (a median of 2,235.5 rows is "2,236", 112.5 rows "112.5", 25.5123 s "25.512")."""
    if isinstance(v, float):
        if v.is_integer() or abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return "–" if v is None else str(v)


def sweep(scenario: Scenario, path: str, values: Sequence[Any], metrics: Sequence[str] = ("first_sync_p95",),
          **run_options: Any) -> Sweep:
    """Run the scenario once per value of the field at `path` (each on a fresh server) and tabulate
    `metrics` (ClassFigures field names) per class."""
    unknown = [m for m in metrics if m not in ClassFigures.__dataclass_fields__]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(ClassFigures.__dataclass_fields__)}")
    out = Sweep(path, list(metrics))
    for value in values:
        out.values.append(value)
        out.results.append(run(change(scenario, {path: value}), **run_options))
    return out
