"""Runs that survive what users do (issue #21): a first Ctrl-C or a SIGTERM stops the devices and
keeps what happened so far, written and marked interrupted, exit 130 or 143; a second Ctrl-C stops
at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _start(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "simulator.cli", "run", str(ROOT / "scenarios" / "field_service.yaml"),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_devices(proc: subprocess.Popen[str]) -> str:
    """Read stderr until the fleet runs (a progress line), so the signal lands while devices sync."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if "[running]" in line or not line:
            return seen
    raise AssertionError(f"the fleet never started: {seen}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_first_interrupt_keeps_the_run_so_far_marked_interrupted(tmp_path: Path, sig: int, code: int) -> None:
    proc = _start(tmp_path)
    _wait_for_devices(proc)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and f"interrupted ({signal.Signals(sig).name})" in err
    (run_dir,) = tmp_path.iterdir()
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["interrupted"] == signal.Signals(sig).name and summary["totals"]["syncs"] > 0
    assert summary["ledger"]["interrupted"] and summary["ledger"]["invariants"]["report_matches_ledger"]["checked"] > 0
    assert summary["ledger"]["invariants"]["report_matches_ledger"]["violations"] == 0
    assert (run_dir / "syncs.csv").read_text().count("\n") == summary["totals"]["syncs"] + 1
    assert "interrupted by" in (run_dir / "report.html").read_text()


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    _wait_for_devices(proc)
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
