"""The `syncsim` command with bad input: one `syncsim: ...` line naming the input and what is allowed,
exit status 2, and nothing long started (no run, no server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import simulator.runner
import simulator.server.serve
from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "scenarios" / "smoke.yaml")


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the runner: a test fails if a run starts; a started run's out folder is recorded."""
    started: list[Path] = []

    class Result:
        exit_code = 0

    async def fake_run(scenario: Any, out: Path, **_: Any) -> Result:
        started.append(out)
        return Result()

    monkeypatch.setattr(simulator.runner, "run_scenario", fake_run)
    return started


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("devices", ["0", "-1"], ids=["zero", "negative"])
def test_run_with_fewer_than_one_device_exits_2_before_running(
    devices: str, no_run: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", SMOKE, "--devices", devices, "--no-progress"]) == 2
    assert error_line(capsys) == f"syncsim: {SMOKE}: devices override: must be an integer >= 1 (got {int(devices)})"
    assert no_run == []


def test_run_with_more_devices_than_max_devices_names_the_limit(
    no_run: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", SMOKE, "--devices", "20001", "--no-progress"]) == 2
    assert "20001 devices exceed max_devices=20000; give an integer from 1 to 20000" in error_line(capsys)
    assert no_run == []


@pytest.mark.parametrize(("option", "value", "problem"), [
    ("--duration", "inf", "duration_s: Input should be a finite number (got inf)"),
    ("--time-scale", "inf", "time_scale: Input should be a finite number (got inf)"),
    ("--seed", "-1", "seed: Input should be greater than or equal to 0 (got -1)"),
], ids=["duration-inf", "time-scale-inf", "seed-negative"])
def test_run_with_an_override_out_of_range_exits_2_naming_the_field(
    option: str, value: str, problem: str, no_run: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", SMOKE, option, value, "--no-progress"]) == 2
    assert f"{SMOKE}: {problem}" in capsys.readouterr().err
    assert no_run == []


def test_run_with_out_under_a_file_exits_2_before_running(
    tmp_path: Path, no_run: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert main(["run", SMOKE, "--out", str(a_file / "reports"), "--no-progress"]) == 2
    assert error_line(capsys) == f"syncsim: --out {a_file / 'reports'}: cannot write reports there: Not a directory"
    assert no_run == []


def test_run_with_out_naming_a_file_says_it_is_not_a_folder(
    tmp_path: Path, no_run: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "reports"
    a_file.write_text("")
    assert main(["run", SMOKE, "--out", str(a_file), "--no-progress"]) == 2
    assert error_line(capsys) == f"syncsim: --out {a_file}: cannot write reports there: it is a file, not a folder"
    assert no_run == []


def test_run_creates_the_out_folder_before_running_and_leaves_no_probe_in_it(
    tmp_path: Path, no_run: list[Path]
) -> None:
    out = tmp_path / "nightly" / "reports"
    assert main(["run", SMOKE, "--out", str(out), "--no-progress"]) == 0
    assert no_run == [out] and out.is_dir() and list(out.iterdir()) == []


def test_validate_a_file_that_is_not_utf8_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    assert main(["validate", str(path)]) == 2
    assert error_line(capsys) == (f"syncsim: {path}: not UTF-8 text (byte 0xe9 at offset 9, line 1); "
                                  "save the scenario as UTF-8")


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_on_a_port_outside_0_to_65535_exits_2(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", SMOKE, "--port", port]) == 2
    assert error_line(capsys) == (f"syncsim: port {port} is not allowed; "
                                  "give a port from 0 to 65535 (0 picks a free one)")


@pytest.mark.parametrize("host", ["0.0.0.0", "example.com"])
def test_serve_on_a_host_that_is_not_loopback_exits_2(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", SMOKE, "--host", host]) == 2
    assert error_line(capsys) == (f"syncsim: host {host!r} is not a loopback address; "
                                  "syncsim only listens on 127.0.0.0/8, ::1 or localhost")


def test_serve_on_a_port_in_use_exits_2_naming_port_and_host(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", SMOKE, "--port", str(busy_port)]) == 2
    assert error_line(capsys).startswith(f"syncsim: port {busy_port} on 127.0.0.1 is already in use")


def test_serve_with_tls_listens_on_8443_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    ports: list[int] = []
    monkeypatch.setattr(simulator.server.serve, "serve_forever", lambda scenario, **kw: ports.append(kw["port"]))
    assert main(["serve", SMOKE, "--tls"]) == 0
    assert main(["serve", SMOKE]) == 0
    assert ports == [8443, 8080]


@pytest.mark.parametrize("option", ["--out", "--save-baseline"])
def test_bench_with_an_unwritable_output_exits_2_before_any_run(
    option: str, tmp_path: Path, no_run: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bench of minutes must not end unable to save: both places are tried first (issue #21)."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    target = a_file / ("reports" if option == "--out" else "base.json")
    args = ["bench", SMOKE, "--devices", "2", option, str(target)]
    if option == "--save-baseline":
        args += ["--out", str(tmp_path / "bench")]
    assert main(args) == 2
    what = "reports" if option == "--out" else "the baseline"
    assert error_line(capsys).startswith(f"syncsim: {option} {target}: cannot write {what} there: ")
    assert no_run == []


def test_the_last_progress_line_agrees_with_the_table_and_comes_before_the_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed syncs counted as the table counts them (the quiet period's final syncs aside), and the
    last progress line printed before the reports, not after (issue #21)."""
    import re

    import yaml

    data = yaml.safe_load(Path(SMOKE).read_text())
    data["server"]["faults"] = {"error_rate": 0.6}
    flaky = tmp_path / "smoke.yaml"
    flaky.write_text(yaml.safe_dump(data))
    main(["run", str(flaky), "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    lines = (out.err + out.out).splitlines()
    progress = [i for i, line in enumerate(lines) if re.search(r"t=[\d,]+/[\d,]+s", line)]
    reports = next(i for i, line in enumerate(lines) if line.startswith("reports:"))
    assert progress and progress[-1] < reports
    last = re.search(r"syncs ([\d,]+)  failed ([\d,]+)", lines[progress[-1]])
    totals = re.search(r"Totals: \d+ devices, ([\d,]+) syncs \(([\d,]+) failed\)", out.err + out.out)
    assert last is not None and totals is not None and last.groups() == totals.groups()
    assert int(totals.group(2)) > 0 and lines[progress[-1]].startswith("[quiet period: final syncs]")


def test_syncsim_locust_help_lists_syncsims_own_locust_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Locust's --help prints before the locustfile loads, so it cannot show them (issue #21)."""
    with pytest.raises(SystemExit):
        main(["locust", "--help"])
    out = capsys.readouterr().out
    assert all(option in out for option in ("--admin-key", "--syncsim-out", "--syncsim-requests"))


def test_a_full_disk_still_gives_the_verdict_and_the_table_then_names_what_was_not_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--out on a full disk: no traceback and no half report.html; the verdict and the per-class table
    first, then which output could not be written and why; exit 1 (issue #21)."""
    import errno

    import simulator.reports.output as output

    def full_disk(summary: object, records: object, path: Path, *args: object) -> None:
        path.write_text("<html><body>half a rep")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(output, "write_html", full_disk)
    assert main(["run", SMOKE, "--out", str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr()
    text = out.err + out.out
    assert "Traceback" not in text
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "report.html").exists() and (run_dir / "summary.json").exists()
    for needle in ("Sync summary per user class", "end-of-run check", "Ledger"):
        assert needle in text
    err = "".join(out.err.split())  # the console wraps long lines (paths too) at its width
    assert "".join(f"could not write {run_dir / 'report.html'}: No space left on device".split()) in err
    assert err.index("end-of-runcheck") < err.index("couldnotwrite")
