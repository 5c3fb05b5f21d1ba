"""syncsim from Python: changing a scenario by field path, and the two shipped examples end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulator import api

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke.yaml"


def test_a_change_picks_list_items_by_name_or_index_and_is_validated_again() -> None:
    s = api.load(SMOKE)
    changed = api.change(s, {"user_classes[technician].profile[msdyn_workorder].filter": "team",
                             "tables[0].rows": 77, "user_classes[1].count": 2, "seed": 5})
    tech = next(c for c in changed.user_classes if c.name == "technician")
    assert next(p for p in tech.profile if p.table == "msdyn_workorder").filter == "team"
    assert (changed.tables[0].rows, changed.class_counts()["manager"], changed.seed) == (77, 2, 5)
    assert s.tables[0].rows == 50  # the original is unchanged
    with pytest.raises(api.ScenarioError, match=r"no item 'nobody' \(there are: technician, manager\)"):
        api.change(s, {"user_classes[nobody].count": 3})
    with pytest.raises(api.ScenarioError, match="is not a list"):
        api.change(s, {"seed[0]": 1})
    with pytest.raises(api.ScenarioError, match="duration_s"):  # validation as for a file: privilege change at 300 s
        api.change(s, {"duration_s": 120})


def test_a_sweep_refuses_an_unknown_metric_before_running() -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        api.sweep(api.load(SMOKE), "seed", [1, 2], metrics=["speed"])


@pytest.mark.parametrize("example", ["sweep_filter_days.py", "rollout_plan.py"])
def test_the_examples_run(tmp_path: Path, example: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / example), "--small", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    if example == "sweep_filter_days.py":
        rows = [line.split() for line in done.stdout.splitlines() if line.split()[:2][-1:] == ["technician"]]
        held = [float(r[3]) for r in rows]  # rows per device: more days, more work orders held
        assert [r[0] for r in rows] == ["7", "30", "90"] and held == sorted(held) and held[0] < held[-1]
    else:
        assert "everyone at once" in done.stdout and "three waves" in done.stdout


def test_a_sweeps_table_shows_row_counts_without_false_decimals() -> None:
    """A median of two devices' rows is 2,235.5: shown "2,236", not "2,235.500" (issue #21)."""
    from simulator.api import _cell

    assert [_cell(v) for v in (2235.5, 112.5, 25.51234, 3.0, 0.0123, None, 7)] == [
        "2,236", "112.5", "25.512", "3", "0.012", "–", "7"]


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path: Path) -> None:
    """In real time the server's process is spawned, which imports the script again: a script that
    calls syncsim at its top level gets the fix in the error, not only "closed its pipe" (issue #21)."""
    script = tmp_path / "mine.py"
    script.write_text("from simulator import api\n"
                      "scenario = api.load('scenarios/smoke.yaml', duration_s=400, quiet_period_s=60)\n"
                      f"api.run(scenario, clock='real', out={str(tmp_path / 'out')!r})\n")
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert 'if mine.py calls syncsim at its top level, put those calls under `if __name__ == "__main__":`' in done.stderr
