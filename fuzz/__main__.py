"""python -m fuzz [--cases N] [--minutes M] [--seed S] [--scenario FILE]: fuzz a syncsim server.

Starts the scenario's server on loopback (in this process, on a manual clock, with its back office
and privilege schedule off), runs every hand-written hostile case, then cases generated from
simulator/protocol/openapi.yaml until N cases or M minutes, whichever comes first. Prints cases
tried, 5xx seen, schema mismatches, state changes on a 4xx and hostile requests not refused, with
the first examples of each and a curl line that repeats them. Findings that are instances of a known
bug (fuzz/known.py) are labelled so; the exit status is 1 when any finding is not.

Defaults come from FUZZ_CASES (5000), FUZZ_MINUTES (10), FUZZ_SEED (0) and FUZZ_SCENARIO
(scenarios/smoke.yaml).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from fuzz.campaign import Limits, campaign
from fuzz.known import known_bug
from fuzz.run import TITLES, Finding, Report
from fuzz.server import FuzzServer, fuzz_scenario


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=int(env.get("FUZZ_CASES", 5000)),
                        help="stop after this many cases (hostile and generated; default %(default)s)")
    parser.add_argument("--minutes", type=float, default=float(env.get("FUZZ_MINUTES", 10)),
                        help="stop after this many minutes (default %(default)s)")
    parser.add_argument("--seed", type=int, default=int(env.get("FUZZ_SEED", 0)), help="generation seed")
    parser.add_argument("--scenario", default=env.get("FUZZ_SCENARIO", "scenarios/smoke.yaml"))
    parser.add_argument("--examples", type=int, default=3, help="distinct examples printed per kind of finding")
    parser.add_argument("--no-hostile", action="store_true", help="only generated cases")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.minutes <= 0:
        parser.error("--cases must be at least 1 and --minutes above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_log = logging.getLogger("aiohttp.server")  # tracebacks of 5xx go into the findings instead
    server_log.propagate = False
    scenario = fuzz_scenario(args.scenario)
    started = time.monotonic()
    last = [started]

    def progress(report: Report) -> None:
        if time.monotonic() - last[0] >= 30:
            last[0] = time.monotonic()
            counts = ", ".join(f"{TITLES[k]}: {report.count(k)}" for k in ("5xx", "schema", "state", "unexpected"))
            print(f"  ... {report.cases} cases in {last[0] - started:.0f} s ({counts})", file=sys.stderr, flush=True)

    print(f"fuzzing {scenario.name} (seed {args.seed}): up to {args.cases} cases or {args.minutes:g} minutes",
          file=sys.stderr, flush=True)
    with FuzzServer(scenario) as server:
        shown: set[str] = set()

        def new_finding(finding: Finding) -> None:
            """Show a finding that is not a known bug as soon as it is seen (the first of each kind and case)."""
            key = f"{finding.kind} {finding.case}"
            if known_bug(finding) is None and key not in shown and len(shown) < 50:
                shown.add(key)
                print(f"  new: {finding.render(server.base_url)}", file=sys.stderr, flush=True)

        report = campaign(server, Limits(args.cases, args.minutes * 60, args.seed), on_finding=new_finding,
                          hostile=not args.no_hostile, progress=progress)
        report.label = lambda finding: bug.key if (bug := known_bug(finding)) else None
        print(report.render(server.base_url, examples=args.examples))
    unknown = [f for f in report.findings if known_bug(f) is None]
    known = len(report.findings) - len(unknown)
    print(f"\n{len(unknown)} findings that are not known bugs, {known} instances of known bugs (fuzz/known.py)")
    return 1 if unknown else 0


if __name__ == "__main__":
    raise SystemExit(main())
