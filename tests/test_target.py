"""`syncsim run --target`: devices against an already running `syncsim serve` of the same scenario,
and a clear error for a target the run cannot use."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "scenarios" / "smoke.yaml")


@pytest.fixture
def served() -> Iterator[str]:
    """`syncsim serve scenarios/smoke.yaml` in another process on a free port; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "serve", SMOKE, "--port", "0",
                             "--admin-key", "k3y"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"serving at (http://\S+)", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_run_drives_an_already_running_server_and_checks_it_through_its_extensions(
        served: str, tmp_path: Path) -> None:
    code = main(["run", SMOKE, "--target", served, "--admin-key", "k3y", "--out", str(tmp_path), "--no-progress"])
    (run_dir,) = tmp_path.iterdir()
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert code == 0 and summary["ledger"]["passed"] and summary["end_of_run_check"]["devices_checked"] == 3


def test_one_long_running_serve_takes_three_runs_in_a_row_each_from_the_seeded_state(
        served: str, tmp_path: Path) -> None:
    """A nightly job points at one `syncsim serve`: the second run used to meet the first run's state
    (phantom writes, stale rows, 0x80060890). Each run now starts from the seeded state (issue #21)."""
    seeds, requests = [], []
    for n in range(3):
        out = tmp_path / str(n)
        code = main(["run", SMOKE, "--target", served, "--admin-key", "k3y", "--out", str(out), "--no-progress",
                     "--time-scale", "240"])
        (run_dir,) = out.iterdir()
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
        assert code == 0 and summary["ledger"]["passed"] and summary["end_of_run_check"]["passed"], n
        requests.append(summary["server"]["requests"])
        ledger = urllib.request.Request(f"{served}/_syncsim/ledger", headers={"Authorization": "Bearer k3y"})
        with urllib.request.urlopen(ledger, timeout=30) as answer:
            seeds.append(orjson.loads(answer.read())["seed_version"])
    # every run started from the same seeded store, and the server's counters from zero (not the sum of runs)
    assert seeds[0] == seeds[1] == seeds[2] and max(requests) < 1.5 * min(requests)


def test_a_target_of_another_scenario_or_with_a_wrong_key_is_refused_before_the_run(
        served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SMOKE, "--seed", "43", "--target", served, "--admin-key", "k3y", "--out", str(tmp_path)]) == 2
    assert "serves {'scenario': 'smoke', 'seed': 42" in capsys.readouterr().err
    assert main(["run", SMOKE, "--target", served, "--admin-key", "wrong", "--out", str(tmp_path)]) == 2
    assert "admin key" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no run, no report


def test_a_target_that_is_not_loopback_or_lacks_its_key_gets_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SMOKE, "--target", "http://10.0.0.1:8080", "--admin-key", "k", "--out", str(tmp_path)]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert main(["run", SMOKE, "--target", "http://127.0.0.1:8080", "--out", str(tmp_path)]) == 2
    assert "--admin-key" in capsys.readouterr().err
    assert main(["run", SMOKE, "--target", "http://127.0.0.1:9", "--admin-key", "k", "--out", str(tmp_path)]) == 2
    assert "cannot reach the server" in capsys.readouterr().err


def test_a_target_that_is_not_a_syncsim_server_gets_one_line_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python3 -m http.server` on the port: a 404 page in HTML, not a JSONDecodeError traceback."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert main(["run", SMOKE, "--target", url, "--admin-key", "k", "--out", str(tmp_path / "out")]) == 2
    finally:
        httpd.shutdown()
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("syncsim:")]
    assert "Traceback" not in err and line.startswith(f"syncsim: {url}: GET /_syncsim/health answered HTTP 404")
    assert line.endswith("this is not a syncsim server (start one with `syncsim serve SCENARIO`)")
