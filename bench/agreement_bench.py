"""`python -m bench agreement`: the two clocks agree where the real-time run is not saturated.

The same scenario and seed, once in virtual time (the server's time from its model, every transfer
and wait simulated) and once in real time (the server in its own process, loopback sockets, real
waits at the scenario's time_scale): per user class, first-sync p50 and p95 of both, and their ratio
(virtual / real; target within 10%). A real-time run marked generator-saturated is said to be so:
its figures then include the generator's own delay and the ratio is not a verdict. Scenarios: smoke
and field_service (smoke only with --quick).
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
        for cls, v in virtual["classes"].items():
            r = real["classes"].get(cls, {})
            for p in ("p50", "p95"):
                vv, rr = (v.get("first_sync") or {}).get(p), (r.get("first_sync") or {}).get(p)
                if vv is None or rr is None or rr <= 0:
                    continue
                ratio = vv / rr
                ok = None if saturated else abs(ratio - 1) <= TOLERANCE
                figure = info("agreement", f"{name} {cls}: first sync {p}, virtual / real", ratio, "x",
                              detail=(f"virtual {vv:.2f} s, real {rr:.2f} s"
                                      + (" (the real-time run was generator-saturated: not a verdict)" if saturated
                                         else "")), virtual_s=vv, real_s=rr, saturated=saturated)
                figure.target, figure.ratio, figure.ok = f"within {TOLERANCE:.0%} of 1", ratio, ok
                out.append(figure)
    return out
