"""Whole runs in virtual time (`syncsim run`'s default): the same scenario and seed give the same
bytes on any machine, loaded or not, and the figures have answers known by hand."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from simulator.clock import VIRTUAL_START
from simulator.runner import GENERATOR_FIELDS, RunResult, run_blocking
from simulator.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
SAME_BYTES = ("syncs.csv", "first_syncs.csv", "events.csv", "timeline.csv")
HOG = "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass\n"


def _cli_run(scenario: str, out: Path, hash_seed: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.Popen([sys.executable, "-m", "simulator.cli", "run", str(ROOT / "scenarios" / scenario),
                             "--out", str(out), "--no-progress"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _summary_without_generator(run_dir: Path) -> dict[str, Any]:
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    for name in GENERATOR_FIELDS:
        summary.pop(name)
    return dict(summary)


def test_the_same_seed_gives_the_same_bytes_in_two_processes_one_beside_a_cpu_hog(tmp_path: Path) -> None:
    """chaos (every fault, storms, airplane mode, privilege changes, the back office) twice: with
    different hash seeds, the second beside a process that keeps a core busy."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        runs = [_cli_run("chaos.yaml", tmp_path / name, seed) for name, seed in (("a", "1"), ("b", "2"))]
        for run in runs:
            _, err = run.communicate(timeout=600)
            assert run.returncode == 0, err.decode()[-2000:]
    finally:
        hog.kill()
    (a,), (b,) = (list((tmp_path / name).iterdir()) for name in "ab")
    for name in SAME_BYTES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert _summary_without_generator(a) == _summary_without_generator(b)
    with (a / "timeline.csv").open() as f:
        samples = list(csv.DictReader(f))
    assert max(int(s["devices_offline"]) for s in samples) > 0 and max(int(s["devices_syncing"]) for s in samples) > 0
    assert samples[-1]["devices_offline"] == "0"  # the quiet period brought everyone back online
    assert orjson.loads((a / "summary.json").read_bytes())["clock"] == "virtual"


def _run(data: dict[str, Any], tmp_path: Path) -> RunResult:
    return run_blocking(parse_scenario(data), tmp_path, progress=False, console=Console(quiet=True), report=False)


def _firsts(result: RunResult) -> list[dict[str, str]]:
    with (result.out_dir / "first_syncs.csv").open() as f:
        return list(csv.DictReader(f))


FREE = {"concurrency": 1, **{k: {"base_ms": 0} for k in ("metadata", "read", "delta", "write", "batch", "file", "other")}}


def _one_table(*, classes: list[dict[str, Any]], model: dict[str, Any], rows: int = 600,
               **extra: Any) -> dict[str, Any]:
    return {"name": "known", "seed": 5, "duration_s": 600, "quiet_period_s": 600,
            "server": {"model": model, **extra.pop("server", {})},
            "tables": [{"logical_name": "account", "rows": rows, "row_bytes": 1000}],
            "networks": {"slow": {"latency_ms": 0, "down_kbps": 100, "up_kbps": 100},
                         "flat": {"latency_ms": 0}},
            "user_classes": classes, **extra}


def _manager(**behaviour: Any) -> dict[str, Any]:
    return {"name": "manager", "count": 1, "profile": [{"table": "account"}], "networks": {"slow": 1.0},
            "behaviour": {"sync_interval_s": 3600, "edits_per_hour": 0, **behaviour}}


def test_a_600_kb_first_sync_on_a_100_kbps_link_takes_about_52_seconds_of_virtual_time(tmp_path: Path) -> None:
    result = _run(_one_table(classes=[_manager(page_size=100)], model=FREE), tmp_path)
    (first,) = _firsts(result)
    assert first["finished"] == "1" and int(first["rows"]) == 600
    body = int(first["bytes"])
    assert body == pytest.approx(600_000, rel=0.03)
    # 2 metadata requests + 6 pages of 100 rows, 500 B of headers each way per request, x 1514/1448 for
    # TCP/IP headers and link framing, x (1 + 22/16384) for TLS records; no latency, a free server
    wire_bytes = (body + 8 * (500 + 500)) * 1514 / 1448 * (1 + 22 / 16384)
    assert float(first["duration_s"]) == pytest.approx(wire_bytes * 8 / 100_000, abs=1e-3)
    assert 51 <= float(first["duration_s"]) <= 53
    assert result.passed


def test_three_first_syncs_queue_at_a_one_request_server_first_come_first_served(tmp_path: Path) -> None:
    """Each first sync is 2 metadata requests and one page; metadata costs the server 2 s, the rest
    nothing. Three devices start at once on a server that works on one request at a time, first come
    first served: the first metadata requests are served 0-2, 2-4, 4-6 s, the second ones (sent as
    the first ones end) 6-8, 8-10, 10-12 s, so the metadata phases end at 8, 10 and 12 s; and each
    page, free but sent after its device's metadata, waits behind the metadata still queued: every
    first sync ends at 12 s. On a server working on three at once each takes 2 x 2 s."""
    model = {**FREE, "metadata": {"base_ms": 2000}}
    manager = {**_manager(), "count": 3, "networks": {"flat": 1.0}}
    result = _run(_one_table(classes=[manager], model=model, rows=10), tmp_path)
    firsts = _firsts(result)
    assert sorted(float(f["phase_metadata_s"]) for f in firsts) == [8.0, 10.0, 12.0]
    assert [float(f["duration_s"]) for f in firsts] == [12.0, 12.0, 12.0]
    spent = result.summary["server_model"]["spent"]
    assert spent["busy_s"] == 12.0 and spent["queued_s"] == 24.0  # 2+4+4+4+4+2 of metadata, 4+2+0 of pages
    three_at_once = _run(_one_table(classes=[manager], model={**model, "concurrency": 3}, rows=10), tmp_path)
    assert [float(f["duration_s"]) for f in _firsts(three_at_once)] == [4.0, 4.0, 4.0]


def test_service_protection_counts_the_modelled_execution_time(tmp_path: Path) -> None:
    """Pages cost the server 2 s each and a user may use 5 s of execution time per window: the third
    page of a ten-page first sync is refused with 429, the device waits Retry-After, and finishes."""
    model = {**FREE, "read": {"base_ms": 2000}}
    data = _one_table(classes=[{**_manager(page_size=100), "networks": {"flat": 1.0}}], model=model, rows=1000,
                      server={"limits": {"execution_time_s": 5, "window_s": 60}})
    result = _run(data, tmp_path)
    (first,) = _firsts(result)
    throttles = result.summary["server"]["throttles"]
    assert sum(throttles.values()) > 0 and first["finished"] == "1"
    assert float(first["duration_s"]) > 60  # at least one window waited out
    assert result.passed  # the ledger's "throttling honoured" included


def test_a_2g_first_sync_of_about_a_minute_is_as_long_for_everyone_and_ends_inside_the_scenario(tmp_path: Path) -> None:
    """One world, one time: a transfer is as long for the device as for the rest of the run (in real
    time at time_scale 60 this first sync could not end inside a 1,200 s scenario)."""
    from simulator import advisor

    tech = {"name": "technician", "count": 1, "profile": [{"table": "account"}], "networks": {"2g": 1.0},
            "behaviour": {"sync_interval_s": 300, "edits_per_hour": 0}}
    data = {"name": "twog", "seed": 9, "duration_s": 1200, "quiet_period_s": 600,
            "tables": [{"logical_name": "account", "rows": 600, "row_bytes": 1000}], "user_classes": [tech]}
    result = _run(data, tmp_path)
    (first,) = _firsts(result)
    assert first["finished"] == "1" and 45 < float(first["duration_s"]) < 70  # 600 rows of ~900 B at 100 kbps
    assert float(first["start"]) - VIRTUAL_START + float(first["duration_s"]) < 1200
    estimate = advisor.report(parse_scenario(data)).classes[0].first_sync_s["2g"]["total"]
    assert float(first["duration_s"]) == pytest.approx(estimate, rel=0.10)
    assert result.summary["classes"]["technician"]["syncs"] >= 4 and result.passed  # and its delta syncs after


def _scenario(name: str) -> Scenario:
    from simulator.scenario import load_scenario

    return load_scenario(ROOT / "scenarios" / name)


def test_the_summary_says_the_run_was_virtual_and_what_the_server_model_assumed(tmp_path: Path) -> None:
    result = run_blocking(_scenario("smoke.yaml"), tmp_path, progress=False, console=Console(quiet=True), report=False)
    s = result.summary
    assert s["clock"] == "virtual" and s["time_scale"] is None and not s["generator_saturated"]
    assert s["server_model"]["concurrency"] == 1 and s["server_model"]["spent"]["requests"] > 0
    assert s["run_s"] >= 600 and set(GENERATOR_FIELDS) <= set(s)
    html = (result.out_dir / "report.html").read_text()
    assert "virtual time: one simulated time" in html and "Server model: 1 request(s) at once" in html


def test_a_page_costs_the_server_its_rows_and_a_delta_its_own_base(tmp_path: Path) -> None:
    """A free network and a server whose pages cost 10 ms a row and whose deltas cost 0.5 s, nothing
    else: the first sync (one page of 100 rows) takes 1.0 s, every delta sync (one delta request)
    0.5 s."""
    model = {**FREE, "read": {"base_ms": 0, "per_row_ms": 10}, "delta": {"base_ms": 500}}
    manager = {**_manager(page_size=100, sync_interval_s=300), "networks": {"flat": 1.0}}
    result = _run(_one_table(classes=[manager], model=model, rows=100), tmp_path)
    (first,) = _firsts(result)
    assert float(first["duration_s"]) == pytest.approx(1.0, abs=1e-9) and int(first["rows"]) == 100
    with (result.out_dir / "syncs.csv").open() as f:
        deltas = [float(r["duration_s"]) for r in csv.DictReader(f) if r["mode"] == "DELTA_SYNC"]
    assert deltas and all(d == pytest.approx(0.5, abs=1e-9) for d in deltas)


def test_the_nightly_rates_of_a_virtual_run_are_per_second_of_the_run_not_of_the_machine() -> None:
    from simulator.nightly.metrics import extract

    summary = {"clock": "virtual", "run_s": 100.0, "wall_s": 4.0, "classes": {},
               "server": {"requests": 250, "rows_served": 5_000, "throttles": {}}, "generator": {"peak_rss_mb": 90.0}}
    out = extract(summary)
    assert (out["server_requests_per_s"], out["server_rows_per_s"]) == (2.5, 50.0)
    assert out["generator_loop_lag_p99_ms"] is None and out["devices_peak_rss_mb"] == 90.0


def test_a_first_sync_cut_by_the_scenarios_end_and_completed_in_the_quiet_period_is_one_whole_figure(
        tmp_path: Path) -> None:
    """The 2g first sync above (600 rows, about a minute), in a 30 s scenario: its first attempt is
    cut by the end, a final sync completes it. It is reported whole: finished, after the end, 600
    rows, from its first request to the end of the final sync (about a minute, as if never cut); the
    class has no unfinished first sync and says one completed after the end."""
    tech = {"name": "technician", "count": 1, "profile": [{"table": "account"}], "networks": {"2g": 1.0},
            "behaviour": {"sync_interval_s": 300, "edits_per_hour": 0, "page_size": 100}}
    data = {"name": "twog_cut", "seed": 9, "duration_s": 30, "quiet_period_s": 600,
            "tables": [{"logical_name": "account", "rows": 600, "row_bytes": 1000}], "user_classes": [tech]}
    result = _run(data, tmp_path)
    (first,) = _firsts(result)
    assert (first["finished"], first["after_end"], first["rows"]) == ("1", "1", "600")
    assert int(first["attempts"]) == 2 and 45 < float(first["duration_s"]) < 80
    detail = result.summary["classes"]["technician"]["first_sync_detail"]
    assert detail["unfinished"]["count"] == 0 and detail["completed_after_end"] == 1
    assert result.summary["classes"]["technician"]["first_sync"]["count"] == 1 and result.passed
