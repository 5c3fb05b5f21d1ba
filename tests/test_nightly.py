"""The nightly benchmark: the gate passes against its own baseline, fails naming the metric against
one made better by hand, calls a metric noisy when its own spread is wider than its tolerance,
never passes a saturated size, and the capacity search returns a size within its budget."""

from __future__ import annotations

from collections.abc import Callable
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
    # virtual time: the same seed gives the same figures, so the gate needs no tolerance but for memory
    # (both runs live in this test's process, whose heap the first run grew)
    assert main(["bench", str(tiny), "--devices", "2", "--out", str(tmp_path / "b"), "--baseline", str(base),
                 "--tolerance", "devices_peak_rss_mb=1"]) == 0
    first, second = (orjson.loads((tmp_path / d / "bench.json").read_bytes())["sizes"][0]["runs"][0] for d in "ab")
    assert {k: v for k, v in first.items() if k != "devices_peak_rss_mb"} == {
        k: v for k, v in second.items() if k != "devices_peak_rss_mb"}
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
    """End to end, real runs. On a loaded machine a run may be marked saturated: the search must then
    stop at that size and never pass it (the search itself is pinned down below, with a fake run)."""
    code = main(["bench", str(tiny), "--find-capacity", "--slo", "first_sync_p95<=600s", "--slo", "failure_rate<=50%",
                 "--start", "1", "--max-runs", "2", "--out", str(tmp_path)])
    result = orjson.loads((tmp_path / "capacity.json").read_bytes())
    curve = result["curve"]
    assert code == 0 and [r["devices"] for r in curve] == [1, 2][: len(curve)]
    saturated = [r["devices"] for r in curve if r["saturated"]]
    if saturated:
        assert curve[-1]["saturated"] and len(saturated) == 1 and not curve[-1]["meets_slos"]
        assert result["stopped_because"].startswith(f"the generator was saturated at {saturated[0]:,} devices")
    else:
        assert result["largest_ok"] == 2 and len(curve) == 2
        assert result["stopped_because"] == "the budget of 2 runs is spent"


def _fake_runs(monkeypatch: pytest.MonkeyPatch, p95_at: Callable[[int], float],
               saturated_from: int | None = None) -> list[int]:
    """Replace the real run by one whose first-sync p95 is p95_at(devices); returns the sizes run."""
    from simulator.nightly import capacity

    sizes: list[int] = []

    def measure(path: Path, devices: int, out: Path, console: Any, label: str,
                server: str = "virtual") -> tuple[dict[str, Any], float]:
        sizes.append(devices)
        first = {"p50": p95_at(devices) / 2, "p95": p95_at(devices), "p99": p95_at(devices)}
        summary = {"classes": {"technician": {
            "first_sync": first, "delta_sync": {"p95": 1.0}, "syncs": 10, "failed": 0, "conflict_rate": 0.0,
            "rejection_rate": 0.0, "first_sync_detail": {"unfinished": {"count": 0}}}},
            "generator_saturated": saturated_from is not None and devices >= saturated_from}
        return summary, 1.0

    monkeypatch.setattr(capacity, "measure", measure)
    return sizes


@pytest.mark.parametrize(("max_runs", "largest_ok", "first_failing", "runs", "why"), [
    (20, 38, 39, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 39], "bisected to within the precision between 38 and 39"),  # doubling, then bisection to one device
    (5, 16, None, [1, 2, 4, 8, 16], "the budget of 5 runs is spent"),
])
def test_the_capacity_search_doubles_then_bisects_and_stops_within_its_budget(
        monkeypatch: pytest.MonkeyPatch, tiny: Path, tmp_path: Path, max_runs: int, largest_ok: int,
        first_failing: int | None, runs: list[int], why: str) -> None:
    sizes = _fake_runs(monkeypatch, lambda n: 10.0 * n)  # p95 <= 385 s holds up to 38 devices
    code = main(["bench", str(tiny), "--find-capacity", "--slo", "first_sync_p95<=385s",
                 "--start", "1", "--max-runs", str(max_runs), "--precision", "0.01", "--out", str(tmp_path / "o")])
    result = orjson.loads((tmp_path / "o" / "capacity.json").read_bytes())
    assert code == 0 and sizes == runs and len(sizes) <= max_runs
    assert (result["largest_ok"], result["first_failing"]) == (largest_ok, first_failing)
    assert why in result["stopped_because"]


def test_the_capacity_search_never_passes_a_saturated_size(monkeypatch: pytest.MonkeyPatch, tiny: Path,
                                                          tmp_path: Path) -> None:
    sizes = _fake_runs(monkeypatch, lambda n: 1.0, saturated_from=8)
    main(["bench", str(tiny), "--find-capacity", "--slo", "first_sync_p95<=60s", "--start", "1",
          "--out", str(tmp_path / "o")])
    result = orjson.loads((tmp_path / "o" / "capacity.json").read_bytes())
    assert sizes == [1, 2, 4, 8] and result["largest_ok"] == 4
    assert result["stopped_because"].startswith("the generator was saturated at 8 devices")


def test_a_baseline_of_another_scenario_or_other_sizes_is_refused_before_any_run(tiny: Path, tmp_path: Path,
                                                                                  capsys: Any) -> None:
    """Comparing with a baseline of another scenario (or seed) or without the sizes asked for reported
    "regressions" of things never measured alike (issue #21): one line, exit 2, no run."""
    base = tmp_path / "base.json"
    assert main(["bench", str(tiny), "--devices", "2", "--out", str(tmp_path / "a"), "--save-baseline", str(base)]) == 0
    other = tmp_path / "tiny_seed.yaml"
    other.write_text(yaml.safe_dump({**TINY, "seed": TINY["seed"] + 1}))  # same name, another seed
    capsys.readouterr()
    assert main(["bench", str(other), "--devices", "2", "--out", str(tmp_path / "b"), "--baseline", str(base)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"syncsim: --baseline {base}: it measured scenario") and "same scenario file and seed" in err
    assert main(["bench", str(tiny), "--devices", "2,3", "--out", str(tmp_path / "c"), "--baseline", str(base)]) == 2
    assert capsys.readouterr().err.strip() == (f"syncsim: --baseline {base}: it has sizes 2, not 3: run --devices with "
                                               "the baseline's sizes, or save a new baseline")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_an_interrupted_bench_keeps_the_sizes_it_finished(tiny: Path, tmp_path: Path) -> None:
    """Ctrl-C during the second size (while it seeds or runs): bench.json and bench.html hold the first, marked interrupted;
    no baseline is saved; exit 130 (issue #21)."""
    import os
    import signal
    import subprocess
    import sys

    out, base = tmp_path / "bench", tmp_path / "base.json"
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "bench", str(tiny), "--devices", "2,300",
                             "--out", str(out), "--save-baseline", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stderr is not None
    seen = ""
    while "size 300" not in seen:  # the second size starts (seeding, then 300 devices: some seconds)
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    bench = orjson.loads((out / "bench.json").read_bytes())
    assert bench["interrupted"] == "SIGINT" and [s["devices"] for s in bench["sizes"]] == [2]
    assert (out / "bench.html").exists() and not base.exists()
    assert "bench interrupted (SIGINT)" in err
