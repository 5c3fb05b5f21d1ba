"""`python -m bench servermodel`: the server model's defaults, measured from the mock server itself.

A virtual-time run models the server's own time (scenario `server.model`: per kind of request a base,
a cost per row and a cost per KiB, and a concurrency). Its defaults are the mock server's: this
benchmark runs a scenario in real time against the server started in this process (one core, as
`syncsim serve` runs), which measures every request (simulator/server/service.py: kind, rows, body
bytes, wall seconds from the handler's start to its first byte), then fits `ms = base + per_row x
rows + per_kb x KiB` per kind by least squares (no negative coefficient) and prints the fit beside the
defaults in simulator/scenario.py (`ServiceModel`), with the ratio of their predicted mean times.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from rich.console import Console

from bench.common import Figure, info
from simulator import api
from simulator.clock import RealClock
from simulator.runner import run_scenario
from simulator.scenario import Scenario, ServiceCost, ServiceModel, load_scenario
from simulator.server.serve import start_server
from simulator.server.service import SERVER_TIME, cost_s
from simulator.target import Target

ROOT = Path(__file__).resolve().parent.parent
Sample = tuple[str, int, int, float]


def fit(samples: list[Sample]) -> tuple[ServiceCost, float]:
    """The least-squares (base, per_row, per_kb) in ms of one kind's samples, no coefficient below
    zero (a negative one is dropped and the rest refitted), and the fit's R^2."""
    rows = np.array([s[1] for s in samples], dtype=float)
    kib = np.array([s[2] for s in samples], dtype=float) / 1024
    ms = np.array([s[3] for s in samples], dtype=float) * 1000
    columns = {"base": np.ones_like(ms), "per_row": rows, "per_kb": kib}
    keep = [k for k, c in columns.items() if k == "base" or np.ptp(c) > 0]
    while True:
        coef, *_ = np.linalg.lstsq(np.column_stack([columns[k] for k in keep]), ms, rcond=None)
        negative = [k for k, c in zip(keep, coef, strict=True) if c < 0 and k != "base"]
        if not negative:
            break
        keep.remove(negative[0])
    got = dict(zip(keep, (max(0.0, float(c)) for c in coef), strict=True))
    predicted = sum(got[k] * columns[k] for k in got)
    ss = float(((ms - ms.mean()) ** 2).sum())
    r2 = 1 - float(((ms - predicted) ** 2).sum()) / ss if ss > 0 else 1.0
    cost = ServiceCost(base_ms=round(got.get("base", 0.0), 4), per_row_ms=round(got.get("per_row", 0.0), 5),
                       per_kb_ms=round(got.get("per_kb", 0.0), 5))
    return cost, r2


def calibration_scenario(quick: bool) -> Scenario:
    """field_service (smoke with --quick), syncing and editing often, so that every kind of request
    comes in numbers: pages and deltas of many sizes, single writes, batches, files."""
    if quick:
        return load_scenario(ROOT / "scenarios" / "smoke.yaml")
    base = load_scenario(ROOT / "scenarios" / "field_service.yaml", devices=12, duration_s=2400.0, time_scale=30.0)
    changes: dict[str, object] = {"quiet_period_s": 600.0}
    for cls in base.user_classes:
        changes[f"user_classes[{cls.name}].behaviour.sync_interval_s"] = 120
        changes[f"user_classes[{cls.name}].behaviour.edits_per_hour"] = 120
    changes["user_classes[manager].behaviour.upload_mode"] = "one_by_one"
    return api.change(base, changes)


async def measure(quick: bool) -> list[Sample]:
    """Run the calibration scenario in real time against a server in this process; its samples."""
    scenario = calibration_scenario(quick)
    server = await start_server(scenario, clock=RealClock(scenario.time_scale))
    try:
        with TemporaryDirectory() as out:
            await run_scenario(scenario, Path(out), progress=False, console=Console(quiet=True),
                               server=Target(server.base_url, server.admin_key), report=False)
        return list(server.app[SERVER_TIME].samples)
    finally:
        await server.close()


def figures(quick: bool) -> list[Figure]:
    samples = asyncio.run(measure(quick))
    defaults = ServiceModel()
    out: list[Figure] = []
    by_kind: dict[str, list[Sample]] = {}
    for s in samples:
        by_kind.setdefault(s[0], []).append(s)
    for kind, group in sorted(by_kind.items()):
        cost, r2 = fit(group)
        default: ServiceCost = getattr(defaults, kind)
        measured = float(np.mean([s[3] for s in group])) * 1000
        modelled = float(np.mean([cost_s(default, s[1], s[2]) for s in group])) * 1000
        out.append(info("servermodel", f"{kind}: mean server time per request", measured, "ms",
                        detail=(f"{len(group):,} requests; fit base {cost.base_ms:g} ms + {cost.per_row_ms:g} ms/row + "
                                f"{cost.per_kb_ms:g} ms/KiB (R^2 {r2:.2f}); the defaults predict {modelled:.3f} ms "
                                f"on these requests ({modelled / measured:.2f}x the measured mean)"),
                        fit=cost.model_dump(), r2=r2, default_mean_ms=modelled, requests=len(group)))
    return out
