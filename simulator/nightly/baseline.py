"""Compare a benchmark with a stored baseline: what regressed beyond its tolerance, what is too
noisy to say, and what cannot be compared (a saturated generator, a size missing on one side).

With several runs per size the medians are compared, and a metric whose own spread over the runs
is wider than its tolerance is called noisy, not regressed. A size where either side's generator
was saturated is not comparable: never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from simulator.nightly.metrics import Rule, rule_for
from simulator.nightly.run import Bench

Verdict = Literal["regressed", "noisy", "not comparable", "ok", "improved"]


@dataclass(frozen=True, slots=True)
class Finding:
    devices: int
    metric: str
    verdict: Verdict
    baseline: float | None
    current: float | None
    limit: float | None
    why: str

    def line(self) -> str:
        return f"{self.devices:>7,} devices  {self.metric}: {self.why}"


def parse_tolerances(items: list[str]) -> dict[str, float]:
    """`metric=tolerance` pairs (`first_sync_p95_s=0.3`, `technician.conflict_rate=0.05`)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            tolerance = float(value)
            rule_for(name.strip())
        except (ValueError, KeyError):
            raise ValueError(f"tolerance {item!r}: give <metric>=<number>, e.g. first_sync_p95_s=0.3") from None
        if not sep or tolerance < 0:
            raise ValueError(f"tolerance {item!r}: give <metric>=<number >= 0>")
        out[name.strip()] = tolerance
    return out


def _rule(metric: str, overrides: Mapping[str, float]) -> Rule:
    rule = rule_for(metric)
    base = metric.rsplit(".", 1)[-1]
    tolerance = overrides.get(metric, overrides.get(base))
    return rule if tolerance is None else replace(rule, tolerance=tolerance)


def compare(current: Bench, baseline: Bench, overrides: Mapping[str, float] | None = None) -> list[Finding]:
    """One finding per metric of every size measured on both sides (sizes on one side only too)."""
    findings: list[Finding] = []
    for size in current.sizes:
        base = baseline.size(size.devices)
        if base is None:
            findings.append(Finding(size.devices, "*", "not comparable", None, None, None, "no baseline for this size"))
            continue
        if size.saturated or base.saturated:
            side = "this run" if size.saturated else "the baseline"
            findings.append(Finding(size.devices, "*", "not comparable", None, None, None,
                                    f"the generator was saturated in {side}: its numbers include its own delay"))
            continue
        now, then, spread = size.median, base.median, size.spread
        for metric in sorted(set(now) & set(then)):
            findings.append(_judge(size.devices, metric, then[metric], now[metric], spread.get(metric),
                                   _rule(metric, overrides or {})))
    return findings


def _judge(devices: int, metric: str, then: float | None, now: float | None, spread: float | None,
           rule: Rule) -> Finding:
    if then is None or now is None:
        return Finding(devices, metric, "not comparable", then, now, None, "missing on one side")
    if rule.kind == "relative":
        limit = then * (1 + rule.tolerance) if rule.worse == "higher" else then * (1 - rule.tolerance)
    else:
        limit = then + rule.tolerance if rule.worse == "higher" else then - rule.tolerance
    worse = now > limit if rule.worse == "higher" else now < limit
    better = now < then if rule.worse == "higher" else now > then
    allowed = f"{rule.tolerance:g}{'' if rule.kind == 'absolute' else ' (relative)'}"
    text = f"{then:g} -> {now:g} {rule.unit}".rstrip() + f" (limit {limit:g}, tolerance {allowed})"
    if worse and spread is not None and rule.kind == "relative" and spread > rule.tolerance:
        return Finding(devices, metric, "noisy", then, now, limit, f"{text}; its own spread over the runs is "
                       f"{spread:.0%}, wider than the tolerance: noisy, not a regression")
    if worse:
        return Finding(devices, metric, "regressed", then, now, limit, f"REGRESSED {text}")
    return Finding(devices, metric, "improved" if better else "ok", then, now, limit, text)


def regressions(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.verdict == "regressed"]
