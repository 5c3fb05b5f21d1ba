"""The run's checks catch every planted bug (mutants/catalog.py): each bug, alone, fails its
scenario's run naming its invariant; each scenario passes without a bug; a known gap stays marked
only while it is not caught. Plus the parts the suite's verdict rests on."""

from __future__ import annotations

from typing import Any

import pytest

from mutants import __main__ as cli
from mutants.catalog import MUTANTS, SCENARIOS, Mutant
from mutants.plant import Outcome, PlantError, plant, run_all, runs


@pytest.fixture(scope="module")
def outcomes() -> dict[tuple[str, str | None], Outcome]:
    return {(o.scenario, o.mutant): o for o in run_all(MUTANTS, jobs=2)}


def test_every_scenario_of_the_suite_passes_without_a_bug(outcomes: dict[tuple[str, str | None], Outcome]) -> None:
    dirty = {s: (o.error or o.violations) for (s, m), o in outcomes.items() if m is None and not o.clean}
    assert dirty == {}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_planted_bug_is_caught_by_its_invariant(mutant: Mutant,
                                                     outcomes: dict[tuple[str, str | None], Outcome]) -> None:
    outcome = outcomes[(mutant.scenario, mutant.name)]
    assert outcome.error is None, outcome.error
    if mutant.gap is not None:  # caught now: take the gap mark off the catalog line
        assert mutant.caught_by not in outcome.violations, f"no longer a gap: {outcome.violations}"
    else:
        assert outcome.violations.get(mutant.caught_by, 0) > 0, outcome.violations
        assert outcome.examples[mutant.caught_by]  # the violation names what broke


def test_the_catalog_covers_the_bugs_the_issue_names_and_its_scenarios_exist() -> None:
    assert len(MUTANTS) >= 16
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    assert {m.scenario for m in MUTANTS} <= set(SCENARIOS)
    assert runs(MUTANTS)[: len(set(m.scenario for m in MUTANTS))] == [(s, None) for s in dict.fromkeys(
        m.scenario for m in MUTANTS)]


def test_a_bug_is_planted_where_a_function_was_imported_by_name_and_put_back() -> None:
    """`from m import f` binds f in the importer: planting in m alone would miss it."""
    from simulator.server import activity, privileges

    original = privileges.change_privilege
    put_back = plant("simulator.server.privileges:change_privilege", lambda f: lambda *a: None)
    try:
        assert privileges.change_privilege is not original
        assert activity.change_privilege is privileges.change_privilege  # the importer sees the bug too
    finally:
        put_back()
    assert privileges.change_privilege is original is activity.change_privilege


def test_a_catalog_line_naming_code_that_moved_fails_clearly() -> None:
    with pytest.raises(PlantError, match="has no 'no_such_method'"):
        plant("simulator.device.outbox:Outbox.no_such_method", lambda f: f)
    with pytest.raises(PlantError, match="no module"):
        plant("simulator.nowhere:f", lambda f: f)


def _mutant(gap: str | None = None) -> Mutant:
    return Mutant("a bug", "smoke", "m:f", lambda f: f, "nothing_lost", gap=gap)


@pytest.mark.parametrize(("violations", "error", "gap", "word"), [
    ({"nothing_lost": 2}, None, None, cli.CAUGHT),
    ({}, None, None, cli.MISSED),
    ({"exactly_once": 1}, None, None, cli.WRONG),
    ({}, "RuntimeError: boom", None, cli.CRASHED),
    ({}, None, "item 9", cli.GAP),
    ({"nothing_lost": 1}, None, "item 9", cli.STALE_GAP),
])
def test_the_verdict_of_a_run(violations: dict[str, int], error: str | None, gap: str | None, word: str) -> None:
    assert cli.verdict(_mutant(gap), Outcome("smoke", "a bug", violations, {}, error)) == word


def test_the_suite_exits_1_when_a_bug_goes_uncaught_or_a_scenario_fails_without_one(
        monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    mutant = _mutant()

    def fake_runs(base_clean: bool, caught: bool) -> Any:
        def run(mutants: Any, jobs: Any, progress: Any) -> Any:
            yield Outcome("smoke", None, {} if base_clean else {"nothing_lost": 1}, {"nothing_lost": "x"})
            yield Outcome("smoke", mutant.name, {"nothing_lost": 1} if caught else {}, {"nothing_lost": "x"})
        return run

    monkeypatch.setattr(cli, "MUTANTS", (mutant,))
    for base_clean, caught, code in [(True, True, 0), (True, False, 1), (False, True, 1)]:
        monkeypatch.setattr(cli, "run_all", fake_runs(base_clean, caught))
        assert cli.main([]) == code
    assert "FAILS WITHOUT A BUG" in capsys.readouterr().out


def test_docs_ledger_names_every_planted_bug() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "ledger.md").read_text()
    assert [m.name for m in MUTANTS if m.name not in text] == []
