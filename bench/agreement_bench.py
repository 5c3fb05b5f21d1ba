"""`python -m bench agreement`: the two clocks agree where the real-time run is not saturated.

The same scenario and seed, once in virtual time (the server's time from its model, every transfer
and wait simulated) and once in real time (the server in its own process, loopback sockets, real
waits at the scenario's time_scale): per user class, first-sync p50 and p95 of both, and their ratio
(virtual / real; target within 10%). Where the real-time run cannot be the reference the figure
says so and is not a verdict: a run marked generator-saturated (its figures include the generator's
own delay), and a class the real-time run warned about (`world_ahead`: its transfers take much of
the real time between its syncs, so airplane windows, waves and the back office ran `time_scale`
times faster than its devices; field_service's technicians at x60). Scenarios: smoke and
field_service (smoke only with --quick).
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from rich.console import Console

from bench.common import Figure, info
from simulator.runner import run_blocking
from simulator.scenario import load_scenario
from simulator.target import Where

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.10


def _run(name: str, server: Where) -> dict[str, Any]:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    with TemporaryDirectory() as out:
        return run_blocking(scenario, Path(out), server=server, progress=False, console=Console(quiet=True),
                            report=False).summary


def figures(quick: bool) -> list[Figure]:
    out: list[Figure] = []
    for name in ("smoke",) if quick else ("smoke", "field_service"):
        virtual, real = _run(name, "virtual"), _run(name, "process")
        saturated = bool(real.get("generator_saturated"))
        ahead = {w["user_class"]: w for w in real.get("world_ahead") or []}
        for cls, v in virtual["classes"].items():
            r = real["classes"].get(cls, {})
            mixed = (f"the real-time run mixed two clocks for {cls} (its work took "
                     f"{ahead[cls]['share'] * 100:.0f}% of the real time between its syncs)" if cls in ahead else None)
            for p in ("p50", "p95"):
                vv, rr = (v.get("first_sync") or {}).get(p), (r.get("first_sync") or {}).get(p)
                if vv is None or rr is None or rr <= 0:
                    continue
                ratio = vv / rr
                agree = abs(ratio - 1) <= TOLERANCE
                # not a verdict: a saturated real-time run, or one that mixed two clocks and disagrees
                why_not = ("the real-time run was generator-saturated" if saturated else
                           mixed if mixed and not agree else None)
                ok = None if why_not else agree
                figure = info("agreement", f"{name} {cls}: first sync {p}, virtual / real", ratio, "x",
                              detail=f"virtual {vv:.2f} s, real {rr:.2f} s" + (
                                  f" ({why_not}: not a verdict)" if why_not else f" ({mixed})" if mixed else ""),
                              virtual_s=vv, real_s=rr, saturated=saturated, world_ahead=cls in ahead)
                figure.target, figure.ratio, figure.ok = f"within {TOLERANCE:.0%} of 1", ratio, ok
                out.append(figure)
    return out
