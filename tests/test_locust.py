"""syncsim inside Locust: what a sync becomes in Locust's statistics (known answers), the engine
loop in its own thread, and Locust itself run headless on the smoke scenario and on bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from simulator.locust.entries import Entry, sync_entries, unfinished_entry
from simulator.locust.loop import EngineLoop
from simulator.metrics import FirstSync, SyncRecord

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "simulator" / "locust" / "locustfile.py"
SMOKE = ROOT / "scenarios" / "smoke.yaml"


def _record(**kw: object) -> SyncRecord:
    base: dict[str, object] = dict(device="dev-a", user="a", user_class="technician", mode="DELTA_SYNC",
                                   result="success", start=0.0, duration_s=1.5, active_s=1.0)
    return SyncRecord(**{**base, **kw})  # type: ignore[arg-type]


def _first(**kw: object) -> FirstSync:
    base: dict[str, object] = dict(device="dev-a", user="a", user_class="technician", network="3g", start=0.0,
                                   duration_s=53.0, finished=True, attempts=2, bytes=600_000, file_bytes=40_000,
                                   phases={"metadata": 3.0, "data": 45.0, "files": 5.0})
    return FirstSync(**{**base, **kw})  # type: ignore[arg-type]


def test_the_attempt_that_completes_a_first_sync_reports_the_whole_first_sync_and_its_phases() -> None:
    attempt = _record(mode="FIRST_SYNC", duration_s=20.0, bytes_by_table={"account": 200_000})
    entries = sync_entries(attempt, _first(), "batch")
    assert entries[0] == Entry("SYNC", "FIRST_SYNC", 53_000.0, 640_000)  # both attempts, as syncsim reports it
    assert {e.name: e.response_time_ms for e in entries[1:]} == {
        "FIRST_SYNC metadata": 3000.0, "FIRST_SYNC data": 45_000.0, "FIRST_SYNC files": 5000.0}


def test_a_failed_sync_is_a_failure_whose_message_is_its_error_code() -> None:
    failed = _record(mode="FIRST_SYNC", result="failed", error_code="0x80072322", duration_s=4.0,
                     bytes_by_table={"account": 1000}, file_bytes=24)
    assert sync_entries(failed, None, "batch") == [Entry("SYNC", "FIRST_SYNC", 4000.0, 1024, "0x80072322")]


def test_each_uploaded_edit_is_one_entry_by_outcome_and_the_upload_phase_one_more() -> None:
    record = _record(uploaded=5, applied=4, conflicts=1, rejections=1, rejection_codes={"0x80040220": 1},
                     phases={"upload": 0.25, "data": 1.0})
    entries = sync_entries(record, None, "one_by_one")
    names = [(e.name, e.error) for e in entries[1:]]
    assert names == [("upload one_by_one", None), ("edit applied", None), ("edit applied", None),
                     ("edit applied", None), ("edit conflict", "CONFLICT"), ("edit rejected", "0x80040220")]
    assert entries[1].response_time_ms == 250.0


def test_quiet_period_syncs_are_not_entries_and_an_unfinished_first_sync_is_a_failure() -> None:
    assert sync_entries(_record(final=True, uploaded=3, applied=3), None, "batch") == []
    assert unfinished_entry(_first(finished=False, error_code=None, duration_s=7.5)) == Entry(
        "SYNC", "FIRST_SYNC unfinished", 7500.0, 640_000, "UNFINISHED")


def test_the_engine_loop_runs_coroutines_on_a_thread_of_its_own() -> None:
    engine = EngineLoop()
    try:
        async def where() -> int:
            return threading.get_ident()
        assert engine.run(where(), timeout=10) != threading.get_ident()
    finally:
        engine.close()


def _locust(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_locust_headless_runs_the_smoke_scenario_and_writes_syncsims_report(tmp_path: Path) -> None:
    done = _locust(tmp_path, "--scenario", str(SMOKE), "-t", "12s", "--csv", "out/l", "--syncsim-out", "rep")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / "l_stats.csv") as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    assert {"FIRST_SYNC", "DELTA_SYNC", "FIRST_SYNC data"} <= set(stats)
    assert not {row["Type"] for row in stats.values()} & {"GET", "POST", "PATCH"}  # raw requests: off by default
    (summary_path,) = (tmp_path / "rep").glob("smoke-*/summary.json")
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["end_of_run_check"]["passed"] and summary["ledger"]["passed"]
    # every sync of the test is one Locust entry (the quiet period's final syncs are not part of the test)
    syncs = sum(int(row["Request Count"]) for name, row in stats.items()
                if row["Type"] == "SYNC" and name in ("FIRST_SYNC", "DELTA_SYNC", "FORCED_SYNC"))
    final = sum(c["final_syncs"] for c in summary["classes"].values())
    assert syncs == summary["totals"]["syncs"] - final > 0
    # Locust's slowest first sync is syncsim's (ms against s, Locust rounds to the millisecond)
    slowest = max(c["first_sync"]["max"] for c in summary["classes"].values() if c["first_sync"]["count"])
    assert float(stats["FIRST_SYNC"]["Max Response Time"]) == pytest.approx(slowest * 1000, abs=1.0)
    assert int(stats["FIRST_SYNC"]["Request Count"]) == summary["totals"]["devices"] == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "missing.yaml"], "missing.yaml"),
    ([], "give the scenario with --scenario FILE"),
    (["--scenario", str(SMOKE), "-u", "50", "-t", "5s"], "50 users is more than the scenario's fleet of 3 devices"),
    (["--scenario", str(SMOKE), "-t", "5s", "--host", "http://127.0.0.1:9", "--admin-key", "k"], "cannot reach"),
])
def test_bad_input_is_one_clear_error_and_locust_exits_non_zero(tmp_path: Path, args: list[str], message: str) -> None:
    done = _locust(tmp_path, *args, timeout=60)
    assert done.returncode != 0
    if message in ("missing.yaml", "give the scenario with --scenario FILE"):
        assert done.returncode == 2  # bad input on the command line, as docs/locust.md says
    errors = [line for line in done.stderr.splitlines() if "syncsim" in line and message in line]
    assert len(errors) == 1, done.stderr[-3000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_master_and_two_workers_report_every_sync_once_from_distinct_devices(tmp_path: Path) -> None:
    """Separate processes, as on several machines: the master starts the server and leases devices;
    each worker runs its own devices and hands them in; the master's report is over all of them."""
    port = str(_free_port())
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--scenario", str(SMOKE)]
    master = subprocess.Popen([*base, "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
                               "--master-bind-port", port, "--headless", "--only-summary", "-t", "12s",
                               "--csv", "out/l", "--syncsim-out", "rep"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen([*base, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        _, err = master.communicate(timeout=120)
        for w in workers:
            w.wait(timeout=30)
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
    assert master.returncode == 0, err[-3000:]
    (run_dir,) = (tmp_path / "rep").glob("smoke-*")
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["end_of_run_check"]["passed"] and summary["ledger"]["passed"]
    hosts = summary["locust"]["device_hosts"]
    assert len(hosts) == 2 and not summary["locust"]["missing_hosts"]
    devices = [set(h["devices"]) for h in hosts]
    assert not devices[0] & devices[1] and devices[0] | devices[1] == {
        "dev-technician-0001", "dev-technician-0002", "dev-manager-0001"}
    assert sum(h["syncs"] for h in hosts) == summary["totals"]["syncs"]
    # the master's percentiles are computed over the concatenated records of both workers
    with open(run_dir / "syncs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["totals"]["syncs"]
    for cls, figures in summary["classes"].items():
        deltas = [float(r["duration_s"]) for r in rows
                  if r["user_class"] == cls and r["mode"] == "DELTA_SYNC" and r["final"] in ("0", "False", "")]
        if figures["delta_sync"]["count"]:
            assert figures["delta_sync"]["count"] == len(deltas)
            assert figures["delta_sync"]["p95"] == pytest.approx(float(np.percentile(deltas, 95)), abs=1e-3)
    # Locust's master holds the workers' entries: one per sync of the test
    with open(tmp_path / "out" / "l_stats.csv") as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    syncs = sum(int(stats[n]["Request Count"]) for n in ("FIRST_SYNC", "DELTA_SYNC", "FORCED_SYNC") if n in stats)
    assert syncs == summary["totals"]["syncs"] - sum(c["final_syncs"] for c in summary["classes"].values())


def test_the_web_ui_has_a_live_syncsim_table_and_serves_the_report_after_the_test(tmp_path: Path) -> None:
    import time
    import urllib.request

    port = _free_port()
    ui = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--scenario", str(SMOKE),
                           "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart", "-t", "10s",
                           "--autoquit", "5", "--syncsim-out", "rep"],
                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    try:
        rows: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len([r for r in rows if int(str(r["syncs"])) > 0]) < 2:
            time.sleep(1)
            status, body = get("/stats/requests")
            if status == 200:
                (table,) = [t for t in orjson.loads(body).get("extended_stats", []) if t["key"] == "syncsim"]
                rows = table["data"]
        assert {r["user_class"] for r in rows} == {"technician", "manager"}, rows  # live, while the test runs
        assert get("/syncsim/report")[0] == 404  # not written yet
        while time.monotonic() < deadline and get("/syncsim/report")[0] != 200:
            time.sleep(1)
        status, page = get("/syncsim/report")
        assert status == 200 and b"syncsim: smoke" in page
    finally:
        ui.kill()
        ui.wait(10)


def test_rollout_waves_become_user_counts_and_a_one_class_wave_spawns_that_class() -> None:
    from simulator.fleet import build_fleet
    from simulator.locust.waves import wave_target
    from tests.conftest import small_scenario

    scenario = small_scenario(rollout=[{"at_s": 0, "user_class": "technician", "count": 2},
                                       {"at_s": 600, "user_class": "manager"},
                                       {"at_s": 900}])
    fleet = build_fleet(scenario)
    assert scenario.class_counts() == {"technician": 3, "manager": 1}
    assert wave_target(fleet, 0, 0) == (2, ["technician"])
    assert wave_target(fleet, 599, 2) == (2, None)  # nothing new to start
    assert wave_target(fleet, 600, 2) == (3, ["manager"])
    assert wave_target(fleet, 900, 3) == (4, ["technician"])  # "all remaining": the third technician


def test_host_drives_a_running_syncsim_serve_and_the_check_passes(tmp_path: Path) -> None:
    import time
    import urllib.request

    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "simulator.cli", "serve", str(SMOKE), "--port", str(port),
                              "--admin-key", "k-test"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/data/v9.2/", timeout=2)
            except urllib.error.HTTPError:
                break  # it answers (401 without a token)
            except OSError:
                time.sleep(0.5)
        done = _locust(tmp_path, "--scenario", str(SMOKE), "-t", "8s", "--host", f"http://127.0.0.1:{port}",
                       "--admin-key", "k-test", "--syncsim-out", "rep", "--syncsim-requests", "--csv", "out/l")
    finally:
        serve.kill()
        serve.wait(10)
    assert done.returncode == 0, done.stderr[-3000:]
    (summary_path,) = (tmp_path / "rep").glob("smoke-*/summary.json")
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["end_of_run_check"]["passed"] and summary["totals"]["syncs"] > 0
    with open(tmp_path / "out" / "l_stats.csv") as f:
        types = {row["Type"] for row in csv.DictReader(f)}
    assert {"SYNC", "GET"} <= types  # --syncsim-requests: every HTTP request of every device as well
