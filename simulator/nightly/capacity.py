"""Capacity search: the largest fleet that meets every SLO (`first_sync_p95<=60s`,
`delta_sync_p95<=5s`, `failure_rate<=1%`, `throttle_rate<=0.5%`...), found by doubling the fleet
until an SLO breaks (halving if the first size already breaks one), then bisecting, within a budget
of runs and minutes.

An SLO on a per-class metric without a class (`first_sync_p95`) holds for every class (its worst);
`technician.first_sync_p95<=60s` names one. A run whose generator was saturated stops the search: from
there on the measurement, not the server, is the limit.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from simulator.clock import wall_s
from simulator.nightly.metrics import CLASS_RULES, RUN_RULES, extract
from simulator.nightly.run import measure
from simulator.target import Where

_SLO = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|<|>=|>)\s*([0-9]*\.?[0-9]+)\s*(s|ms|%)?\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclass(frozen=True, slots=True)
class Slo:
    text: str
    metric: str  # a class metric name (CLASS_RULES) or a run metric (RUN_RULES)
    user_class: str | None
    op: str
    limit: float

    def check(self, metrics: Mapping[str, float | None]) -> tuple[bool, str]:
        """Whether a run's metrics meet this SLO, and the value(s) judged."""
        if self.metric in RUN_RULES:
            values = {self.metric: metrics.get(self.metric)}
        else:
            values = {k: v for k, v in metrics.items() if k.endswith(f".{self.metric}")
                      and (self.user_class is None or k == f"{self.user_class}.{self.metric}")}
        known = {k: v for k, v in values.items() if v is not None}
        if not known:
            return False, f"{self.text}: no value measured"
        worst_key = max(known, key=lambda k: known[k]) if self.op.startswith("<") else min(known, key=lambda k: known[k])
        ok = all(_OPS[self.op](v, self.limit) for v in known.values())
        return ok, f"{worst_key} = {known[worst_key]:g} ({'meets' if ok else 'breaks'} {self.text})"


def parse_slo(text: str) -> Slo:
    """`first_sync_p95<=60s`, `technician.delta_sync_p95<5s`, `failure_rate<=1%`, `throttle_rate<=0.005`."""
    m = _SLO.match(text)
    if not m:
        raise ValueError(f"SLO {text!r}: write <metric><=<number>[s|ms|%], e.g. first_sync_p95<=60s")
    name, op, number, unit = m.groups()
    user_class, _, metric = name.rpartition(".") if "." in name else (None, "", name)
    for candidate in (metric, f"{metric}_s"):
        if candidate in CLASS_RULES or candidate in RUN_RULES:
            metric = candidate
            break
    else:
        known = sorted({*CLASS_RULES, *RUN_RULES})
        raise ValueError(f"SLO {text!r}: unknown metric {metric!r}; one of {', '.join(known)}")
    limit = float(number) / (100 if unit == "%" else 1000 if unit == "ms" else 1)
    return Slo(text.strip(), metric, user_class or None, op, limit)


@dataclass(slots=True)
class Capacity:
    """The search's result: the largest size meeting every SLO, what broke first above it, the curve."""

    slos: list[str]
    largest_ok: int | None = None
    first_failing: int | None = None
    broke: list[str] = field(default_factory=list)
    stopped_because: str = ""
    curve: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"slos": self.slos, "largest_ok": self.largest_ok, "first_failing": self.first_failing,
                "broke": self.broke, "stopped_because": self.stopped_because, "curve": self.curve}


def find_capacity(path: Path, slos: list[Slo], start: int, max_devices: int, max_runs: int,
                  max_minutes: float, precision: float, out: Path, console: Console,
                  server: Where = "virtual") -> Capacity:
    """Double from `start` until an SLO breaks, then bisect to `precision` (a share of the size)."""
    result = Capacity([s.text for s in slos])
    began = wall_s()
    low, high, size = None, None, start

    def budget_left() -> str | None:
        if len(result.curve) >= max_runs:
            return f"the budget of {max_runs} runs is spent"
        if (wall_s() - began) / 60 >= max_minutes:
            return f"the budget of {max_minutes:g} minutes is spent"
        return None

    while (why := budget_left()) is None:
        label = f"[capacity run {len(result.curve) + 1}/{max_runs}]"
        summary, took = measure(path, size, out / f"{size}-devices", console, label, server)
        metrics = extract(summary)
        judged = [s.check(metrics) for s in slos]
        ok = all(passed for passed, _ in judged)
        saturated = bool(summary.get("generator_saturated"))
        result.curve.append({"devices": size, "meets_slos": ok and not saturated, "saturated": saturated,
                             "wall_s": round(took, 1), "judged": [text for _, text in judged], "metrics": metrics})
        console.print(f"  {size:,} devices: {'meets every SLO' if ok else 'breaks an SLO'}"
                      + (" [yellow](generator saturated)[/]" if saturated else ""))
        if saturated:
            result.stopped_because = f"the generator was saturated at {size:,} devices: beyond it the measurement is the limit"
            break
        if ok:
            low = size
        else:
            high, result.broke = size, [text for passed, text in judged if not passed]
        nxt = _next_size(low, high, max_devices, precision)
        if nxt is None:
            result.stopped_because = _done_because(low, high, max_devices)
            break
        size = nxt
    else:
        result.stopped_because = why
    result.largest_ok, result.first_failing = low, high
    return result


def _next_size(low: int | None, high: int | None, max_devices: int, precision: float) -> int | None:
    if high is None:  # still doubling
        if low is None or low >= max_devices:
            return None
        return min(low * 2, max_devices)
    if low is None:  # every size so far breaks: halve
        return high // 2 if high >= 2 else None
    if high - low <= max(1, int(low * precision)):
        return None
    return (low + high) // 2


def _done_because(low: int | None, high: int | None, max_devices: int) -> str:
    if high is None:
        return f"every size up to the scenario's max_devices ({max_devices:,}) meets the SLOs"
    if low is None:
        return f"even {high:,} device(s) break an SLO"
    return f"bisected to within the precision between {low:,} and {high:,} devices"
