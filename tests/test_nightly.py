"""The nightly benchmark: the gate passes against its own baseline, fails naming the metric against
one made better by hand, calls a metric noisy when its own spread is wider than its tolerance,
never passes a saturated size, and the capacity search returns a size within its budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from simulator.cli import main
from simulator.nightly.baseline import compare, parse_tolerances, regressions
from simulator.nightly.capacity import parse_slo
from simulator.nightly.run import Bench, SizeResult

TINY: dict[str, Any] = {
    "name": "tiny", "seed": 3, "duration_s": 120, "time_scale": 60, "quiet_period_s": 600,
    "tables": [{"logical_name": "account", "rows": 40},
               {"logical_name": "msdyn_workorder", "rows": 80,
                "columns": [{"name": "msdyn_duration", "type": "integer", "min": 0, "max": 480}]}],
    "user_classes": [{"name": "technician", "count": 2, "behaviour": {"sync_interval_s": 30, "edits_per_hour": 120},
                      "profile": [{"table": "account"}, {"table": "msdyn_workorder", "filter": "owner"}]}],
}


def _bench(**sizes: list[dict[str, float | None]]) -> Bench:
    return Bench("tiny", 3, [SizeResult(int(n[1:]), runs) for n, runs in sizes.items()])


def test_a_bench_is_within_tolerance_of_itself_and_a_regression_is_named() -> None:
    base = _bench(n10=[{"technician.first_sync_p95_s": 10.0, "server_rows_per_s": 1000.0}])
    same = _bench(n10=[{"technician.first_sync_p95_s": 11.0, "server_rows_per_s": 950.0}])
    assert regressions(compare(same, base)) == []
    worse = _bench(n10=[{"technician.first_sync_p95_s": 13.0, "server_rows_per_s": 700.0}])
    bad = regressions(compare(worse, base))
    assert {f.metric for f in bad} == {"technician.first_sync_p95_s", "server_rows_per_s"}
    assert "REGRESSED 10 -> 13 s (limit 12" in bad[0].line() or "REGRESSED 10 -> 13 s (limit 12" in bad[1].line()


def test_a_metric_whose_own_spread_is_wider_than_its_tolerance_is_noisy_not_regressed() -> None:
    base = _bench(n10=[{"technician.first_sync_p95_s": 10.0}])
    noisy = _bench(n10=[{"technician.first_sync_p95_s": x} for x in (8.0, 13.0, 20.0)])
    (finding,) = compare(noisy, base)
    assert finding.verdict == "noisy" and "spread" in finding.why


def test_a_saturated_size_is_not_comparable_and_tolerances_can_be_overridden() -> None:
    base = _bench(n10=[{"technician.first_sync_p95_s": 10.0}])
    hot = _bench(n10=[{"technician.first_sync_p95_s": 10.0}])
    hot.sizes[0].saturated = True
    assert compare(hot, base)[0].verdict == "not comparable"
    worse = _bench(n10=[{"technician.first_sync_p95_s": 13.0}])
    assert regressions(compare(worse, base, parse_tolerances(["first_sync_p95_s=0.5"]))) == []
    with pytest.raises(ValueError, match="first_sync_p95_s=0.3"):
        parse_tolerances(["nonsense=1"])


def test_slos_read_units_and_judge_the_worst_class() -> None:
    slo = parse_slo("first_sync_p95<=60s")
    assert (slo.metric, slo.limit) == ("first_sync_p95_s", 60.0)
    ok, text = slo.check({"a.first_sync_p95_s": 30.0, "b.first_sync_p95_s": 70.0})
    assert not ok and text.startswith("b.first_sync_p95_s = 70")
    assert parse_slo("failure_rate<=1%").limit == 0.01
    with pytest.raises(ValueError, match="unknown metric"):
        parse_slo("speed>=9")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_the_gate_passes_against_its_own_baseline_and_fails_against_a_better_one(tiny: Path, tmp_path: Path,
                                                                                capsys: Any) -> None:
    base = tmp_path / "base.json"
    assert main(["bench", str(tiny), "--devices", "2", "--out", str(tmp_path / "a"), "--save-baseline", str(base)]) == 0
    assert main(["bench", str(tiny), "--devices", "2", "--out", str(tmp_path / "b"), "--baseline", str(base),
                 "--tolerance", "first_sync_p95_s=2", "--tolerance", "first_sync_p50_s=2",
                 "--tolerance", "delta_sync_p95_s=2", "--tolerance", "generator_loop_lag_p99_ms=100",
                 "--tolerance", "server_requests_per_s=0.9", "--tolerance", "server_rows_per_s=0.9",
                 "--tolerance", "generator_cpu_p50=100", "--tolerance", "first_sync_p99_s=2"]) == 0
    better = orjson.loads(base.read_bytes())  # a baseline made better by hand: first syncs ten times faster
    for run in better["sizes"][0]["runs"]:
        run["technician.first_sync_p95_s"] /= 10
    base.write_bytes(orjson.dumps(better))
    capsys.readouterr()
    assert main(["bench", str(tiny), "--devices", "2", "--out", str(tmp_path / "c"), "--baseline", str(base)]) == 1
    err = capsys.readouterr().err
    assert "technician.first_sync_p95_s: REGRESSED" in err and "FAIL" in err
    assert (tmp_path / "c" / "bench.html").read_text().count("<svg") >= 5


def test_the_capacity_search_returns_a_size_within_its_budget(tiny: Path, tmp_path: Path) -> None:
    code = main(["bench", str(tiny), "--find-capacity", "--slo", "first_sync_p95<=600s", "--slo", "failure_rate<=50%",
                 "--start", "1", "--max-runs", "2", "--out", str(tmp_path)])
    result = orjson.loads((tmp_path / "capacity.json").read_bytes())
    assert code == 0 and result["largest_ok"] == 2 and len(result["curve"]) == 2
    assert result["stopped_because"] == "the budget of 2 runs is spent"
