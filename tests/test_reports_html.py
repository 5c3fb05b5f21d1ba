"""The self-contained HTML report of simulator.reports and its inline SVG charts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from simulator.metrics import SyncRecord
from simulator.reports import charts as charts_module
from simulator.reports import summarize, write_html
from simulator.reports.html import CHARTS

T0 = 1_700_000_000.0


def rec(device: str, user_class: str, mode: str = "FIRST_SYNC", **kw: Any) -> SyncRecord:
    """A successful sync record with defaults; keyword arguments override any field."""
    fields: dict[str, Any] = {
        "user": f"u-{device}",
        "result": "success",
        "start": T0,
        "duration_s": 1.0,
        "active_s": 0.5,
    }
    return SyncRecord(device=device, user_class=user_class, mode=mode, **{**fields, **kw})  # type: ignore[arg-type]


def fleet(devices: int = 40, deltas: int = 4, seed: int = 1) -> list[SyncRecord]:
    """First syncs, delta syncs with uploads, and a few failures for technicians and managers."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(devices):
        user_class = "technician" if i % 2 else "manager"
        scale = 40.0 if user_class == "technician" else 120.0
        meta, data, files = 2.0, float(rng.gamma(4, scale / 8)), float(rng.gamma(2, scale / 10))
        records.append(
            rec(
                f"d{i}",
                user_class,
                start=T0 + i,
                duration_s=meta + data + files,
                phases={"metadata": meta, "data": data, "files": files},
                rows_by_table={"workorder": 500},
                bytes_by_table={"workorder": 2_000_000},
            )
        )
        for k in range(deltas):
            records.append(
                rec(
                    f"d{i}",
                    user_class,
                    "DELTA_SYNC",
                    start=T0 + 300 * (k + 1) + i,
                    duration_s=float(rng.gamma(2, 1.5)),
                    uploaded=10,
                    conflicts=int(rng.integers(0, 2)),
                    rejections=int(rng.integers(0, 2)) if user_class == "technician" else 0,
                )
            )
    records.append(rec("d0", "manager", "DELTA_SYNC", result="failed", error_code="NETWORK", start=T0 + 900))
    records.append(rec("d99", "technician", result="failed", error_code="STORAGE_FULL", start=T0 + 5))
    return records  # fmt: skip


def render(tmp_path: Path, records: list[SyncRecord], title: str = "Field service") -> str:
    path = write_html(summarize(records, [], extra={"scenario": "field_service", "seed": 42}), records,
                      tmp_path / "report.html", title)  # fmt: skip
    return path.read_text(encoding="utf-8")


def test_report_has_an_inline_svg_for_each_chart_and_names_every_class(tmp_path: Path) -> None:
    page = render(tmp_path, fleet())
    assert page.count("<svg") == len(CHARTS) == 8
    for name in ("technician", "manager", "STORAGE_FULL", "NETWORK", "field_service"):
        assert name in page
    for heading, _, _ in CHARTS:
        assert heading in page


def test_report_is_self_contained_with_nothing_loaded_at_view_time(tmp_path: Path) -> None:
    page = render(tmp_path, fleet())
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "url(http" not in page and "<?xml" not in page


def test_report_handles_runs_without_deltas_failures_or_uploads(tmp_path: Path) -> None:
    page = render(tmp_path, [rec("d1", "technician", duration_s=30.0, phases={"data": 25.0})])
    assert page.count("<svg") == 8
    assert (
        "No delta syncs recorded" in page
        and "No failed syncs recorded" in page
        and "No uploads recorded" in page
    )


def test_report_handles_a_run_without_any_records(tmp_path: Path) -> None:
    page = render(tmp_path, [])
    assert page.count("<svg") == 8 and "No syncs recorded" in page and "No timeline recorded" in page
    assert "No successful first syncs recorded" in page


def test_report_escapes_titles_and_class_names(tmp_path: Path) -> None:
    page = render(tmp_path, [rec("d1", "<b>ops</b>")], title="A & B")
    assert "&lt;b&gt;ops&lt;/b&gt;" in page and "<b>ops</b>" not in page
    assert "<title>A &amp; B</title>" in page


def test_svg_ids_differ_between_charts_of_one_page(tmp_path: Path) -> None:
    page = render(tmp_path, fleet())
    ids = re.findall(r'<clipPath id="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids))


def test_delta_scatter_thins_large_runs_and_says_so(monkeypatch: Any) -> None:
    monkeypatch.setattr(charts_module, "MAX_POINTS", 50)
    svg = charts_module.delta_scatter(fleet(devices=20, deltas=10), ["manager", "technician"])
    assert "50 of 201 shown" in svg


def test_report_shows_the_ledger_invariants_and_faults_as_tables(tmp_path: Path) -> None:
    ledger = {"passed": False, "conflicts": {"reported": 3, "ledger": 2, "uploaded": 40},
              "invariants": {"nothing_lost": {"checked": 40, "violations": 0, "examples": []},
                             "conflicts_match_ledger": {"checked": 40, "violations": 1,
                                                        "examples": ["dev-1 op dev-1-7 (update t/r): <no>"]}}}
    summary = summarize([], [], extra={"ledger": ledger, "faults_injected": {"server cut": 4}})
    page = write_html(summary, [], tmp_path / "r.html", "Run").read_text(encoding="utf-8")
    assert "Ledger: FAILED" in page and "conflicts match ledger" in page and "<td>4</td>" in page
    assert "dev-1 op dev-1-7 (update t/r): &lt;no&gt;" in page  # examples escaped
    assert "3 reported by devices, 2 recomputed" in page


def test_the_page_starts_with_verdicts_a_person_reads_first(tmp_path: Path) -> None:
    health = {"samples": 60, "saturated": True, "saturated_share": 0.4,
              "devices_process": {"loop_lag_ms_p99": 340.0, "cpu_max": 1.0}}
    check = {"passed": True, "devices_checked": 3, "missing": 0, "extra": 0, "stale": 0, "undelivered": 0,
             "devices_skipped": {}}
    summary = summarize([], [], extra={"scenario": "smoke", "seed": 42, "duration_s": 600.0, "time_scale": 60.0,
                                       "end_of_run_check": check, "generator_saturated": True, "generator": health})
    page = write_html(summary, [], tmp_path / "r.html", "Run").read_text(encoding="utf-8")
    assert '<b class="ok">passed</b>' in page  # the devices converged
    assert '<b class="bad">SATURATED</b>' in page and "loop lag p99 340 ms" in page
    assert "600 s of scenario time at x60 (10 s real)" in page
    assert "<details>" in page  # every raw field is still there, folded away
