"""python -m mutants [--only TEXT] [--jobs N] [--list]: plant each bug of mutants/catalog.py, one at a
time, run its scenario in virtual time, and print a table: bug, scenario, the invariant that must
catch it, what did. Each scenario also runs without a bug and must pass.

Exit status 1 when a bug goes uncaught (or is caught only by other invariants than its own, or
crashes the run), when a scenario fails without a bug, or when a bug marked as a known gap is now
caught (take the mark off). Known gaps are listed, with what would catch them.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.table import Table

from mutants.catalog import MUTANTS, Mutant
from mutants.plant import Outcome, run_all

CAUGHT, GAP, MISSED, CRASHED, STALE_GAP, WRONG = "caught", "known gap", "MISSED", "CRASHED", "GAP CLOSED", "ELSEWHERE"


def verdict(mutant: Mutant, outcome: Outcome) -> str:
    """What a mutant's run says: caught by its own invariant, a known gap, or a failure of the suite."""
    if outcome.error is not None:
        return CRASHED
    caught = mutant.caught_by in outcome.violations
    if mutant.gap is not None:
        return STALE_GAP if caught else GAP
    if caught:
        return CAUGHT
    return WRONG if outcome.violations else MISSED


def _caught_by(outcome: Outcome) -> str:
    if outcome.error is not None:
        return outcome.error[:100]
    return ", ".join(f"{k} ({v})" for k, v in sorted(outcome.violations.items())) or "nothing"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="only the bugs whose name contains this text")
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time (default: the machine's cores)")
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log keeps the table's rows whole
    mutants = tuple(m for m in MUTANTS if args.only is None or args.only.lower() in m.name.lower())
    if not mutants:
        console.print(f"[red]no bug's name contains {args.only!r}[/] (python -m mutants --list)")
        return 2
    if args.list:
        for m in mutants:
            console.print(f"- {m.name}  [dim]({m.where} on {m.scenario}; caught by {m.caught_by})[/]")
        return 0
    started = time.perf_counter()
    outcomes: dict[tuple[str, str | None], Outcome] = {}

    def progress(outcome: Outcome, done: int, total: int) -> None:
        what = outcome.mutant or f"{outcome.scenario} (no bug)"
        console.print(f"[dim]{done}/{total} {what}: {_caught_by(outcome)} ({outcome.wall_s:.1f} s)[/]")

    for outcome in run_all(mutants, args.jobs, progress):
        outcomes[(outcome.scenario, outcome.mutant)] = outcome
    failures = 0
    table = Table(title=f"Planted bugs: {len(mutants)}, each in its own virtual-time run")
    for column in ("Bug", "Scenario", "Must be caught by", "Caught by", "Verdict"):
        table.add_column(column)
    for scenario in dict.fromkeys(m.scenario for m in mutants):
        base = outcomes[(scenario, None)]
        if not base.clean:
            failures += 1
            table.add_row("(none)", scenario, "nothing", _caught_by(base), "[red]FAILS WITHOUT A BUG[/]")
    for m in mutants:
        outcome = outcomes[(m.scenario, m.name)]
        word = verdict(m, outcome)
        failures += word not in (CAUGHT, GAP)
        colour = {CAUGHT: "green", GAP: "yellow"}.get(word, "red")
        shown = f"[{colour}]{word}[/]" + (f"\n[dim]{m.gap}[/]" if m.gap and word == GAP else "")
        table.add_row(m.name, m.scenario, m.caught_by, _caught_by(outcome), shown)
    console.print(table)
    for m in mutants:
        outcome = outcomes[(m.scenario, m.name)]
        if verdict(m, outcome) == CAUGHT:
            console.print(f"[dim]{m.name}: {outcome.examples[m.caught_by][:160]}[/]")
    caught = sum(verdict(m, outcomes[(m.scenario, m.name)]) == CAUGHT for m in mutants)
    gaps = sum(m.gap is not None for m in mutants)
    console.print(f"{caught} of {len(mutants)} bugs caught by their invariant, {gaps} known gaps, "
                  f"{failures} failures of the suite, in {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
