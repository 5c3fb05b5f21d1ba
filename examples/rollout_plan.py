"""Roll out in waves, or everyone at once? Run the same fleet both ways and compare first-sync p95
and the 429s the server answered (docs/python.md).

    .venv/bin/python examples/rollout_plan.py            # rollout_monday: 1,000 technicians
    .venv/bin/python examples/rollout_plan.py --small    # 30 technicians, quick (the tests run it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator import api

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="30 technicians and a short run")
    parser.add_argument("--out", default="reports/rollout", help="where the runs' reports go")
    args = parser.parse_args(argv)
    scenario = api.load(ROOT / "scenarios" / "rollout_monday.yaml", devices=30 if args.small else None)
    if args.small:
        scenario = api.change(scenario, {"duration_s": 300, "time_scale": 60,
                                         "tables[msdyn_workorder].rows": 3000})
    third = max(1, scenario.class_counts()["technician"] // 3)
    plans = {
        "everyone at once": [{"at_s": 0}],
        "three waves": [{"at_s": 0, "count": third}, {"at_s": 60, "count": third}, {"at_s": 120}],
    }
    print(f"{scenario.name}: {sum(scenario.class_counts().values())} devices")
    print(f"{'plan':<18} {'first sync p95 (s)':>19} {'first sync p99 (s)':>19} {'429s':>6}  check")
    passed = True
    for plan, waves in plans.items():
        result = api.run(api.change(scenario, {"rollout": waves}), out=args.out)
        figures = result.classes["technician"]
        throttled = sum(result.summary["server"]["throttles"].values())
        print(f"{plan:<18} {figures.first_sync_p95 or 0:>19.2f} {figures.first_sync_p99 or 0:>19.2f} "
              f"{throttled:>6}  {'passed' if result.passed else 'FAILED'}")
        passed = passed and result.passed
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
