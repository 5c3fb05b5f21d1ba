"""How far back should technicians' work orders go offline? Sweep the profile filter's day window
and read first-sync p95 and rows per device for each class (docs/python.md).

    .venv/bin/python examples/sweep_filter_days.py            # field_service, 7 / 30 / 90 days
    .venv/bin/python examples/sweep_filter_days.py --small    # the smoke scenario, quick (the tests run it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator import api

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the smoke scenario, a short run per value")
    parser.add_argument("--out", default="reports/sweep", help="where the runs' reports go")
    args = parser.parse_args(argv)
    name = "smoke" if args.small else "field_service"
    scenario = api.load(ROOT / "scenarios" / f"{name}.yaml")
    if args.small:  # a quick version: a few scenario minutes, time compressed further, no privilege change
        scenario = api.change(scenario, {"duration_s": 480, "time_scale": 60, "privilege_changes": []})
    table = "msdyn_workorder"
    scenario = api.change(scenario, {
        f"user_classes[technician].profile[{table}]": {"table": table, "filter": "modified_within_days", "days": 90},
    })
    sweep = api.sweep(scenario, f"user_classes[technician].profile[{table}].days", [7, 30, 90],
                      metrics=["first_sync_p95", "rows_per_device"], out=args.out)
    print(f"{name}: technicians' {table} kept offline for N days")
    print(sweep.text())
    return 0 if all(r.passed for r in sweep.results) else 1


if __name__ == "__main__":
    sys.exit(main())
