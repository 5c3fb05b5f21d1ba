"""The invariant "report matches the ledger": the ledger recomputes every figure the run shows from
its own journal and compares it with summary.json, the CSVs, the console table and the HTML class
table; a difference names the class, the figure, where it was shown and both values."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from simulator.ledger import Journal
from simulator.ledger.report import check_report, recompute
from simulator.metrics import FirstSync, SyncRecord
from simulator.reports import class_table, render_table, summarize, write_records
from simulator.runner import LEDGER_TABLE_WIDTH

T0 = 1_700_000_000.0


def _journal() -> Journal:
    """Two technicians: first syncs of 10 s and 20 s, delta syncs of 1, 2, 3 and 4 s, one failed with
    STORAGE_FULL; 4 uploads, 1 conflict; a final sync; 1,000 bytes a sync."""
    j = Journal()

    def rec(device: str, mode: str, duration: float, **kw: object) -> SyncRecord:
        return SyncRecord(device, device, "technician", mode, "success", T0, duration, duration,  # type: ignore[arg-type]
                          bytes_by_table={"account": 1000}, **kw)  # type: ignore[arg-type]

    for r in (rec("d1", "FIRST_SYNC", 10.0), rec("d2", "FIRST_SYNC", 20.0), rec("d1", "DELTA_SYNC", 1.0),
              rec("d1", "DELTA_SYNC", 2.0, uploaded=2, conflicts=1), rec("d2", "DELTA_SYNC", 3.0, uploaded=2),
              rec("d2", "DELTA_SYNC", 4.0), rec("d2", "FORCED_SYNC", 5.0, final=True)):
        j._record(r)
    j._record(SyncRecord("d2", "d2", "technician", "DELTA_SYNC", "failed", T0, 9.0, 9.0, error_code="STORAGE_FULL"))
    for device, seconds, rows in (("d1", 10.0, 100), ("d2", 20.0, 300)):
        j._first(FirstSync(device, device, "technician", "4g", T0, seconds, True, 1, rows=rows))
    return j


def _check(j: Journal, tmp_path: Path, tamper: object = None) -> tuple[list[str], int]:
    summary = summarize(j.records, [], first_syncs=list(j.first_syncs.values()))
    if callable(tamper):
        tamper(summary)
    paths = write_records(tmp_path, j.records, [], list(j.first_syncs.values()))
    console = Console(width=LEDGER_TABLE_WIDTH, record=True, file=io.StringIO())
    render_table(summary, console=console)
    result = check_report(j, summary, paths["syncs"], paths["first_syncs"], console.export_text(), class_table(summary))
    return result.examples, result.checked


def test_the_ledgers_figures_of_a_run_known_by_hand(tmp_path: Path) -> None:
    w = recompute(_journal())["technician"]
    assert (w.devices, w.syncs, w.failed, w.failures_by_cause) == (2, 8, 1, {"STORAGE_FULL": 1})
    assert (w.first_p50, w.first_p95, w.unfinished) == (15.0, 19.5, 0)  # linear: 10 + 0.95 x 10
    assert w.delta_p95 == pytest.approx(3.85) and w.conflict_rate == 0.25  # deltas 1, 2, 3, 4 s; 1 of 4 uploads
    assert (w.rows_p50, w.bytes_p50) == (200.0, 3500.0)  # d1 3 syncs, d2 4 syncs (the failed one moved 0)


def test_a_true_report_matches_and_every_figure_is_compared(tmp_path: Path) -> None:
    examples, checked = _check(_journal(), tmp_path)
    assert examples == [] and checked >= 14 + 6 + 2 * 11


def test_a_p95_shown_as_the_mean_is_named_with_both_values(tmp_path: Path) -> None:
    def mean_as_p95(summary: dict) -> None:  # type: ignore[type-arg]
        summary["classes"]["technician"]["first_sync"]["p95"] = 15.0

    examples, _ = _check(_journal(), tmp_path, mean_as_p95)
    assert "technician first_sync.p95: summary.json shows 15.0000, the ledger 19.5000" in examples
    assert "technician first sync p95: the console table shows '15.00', the ledger '19.50'" in examples


def test_failed_syncs_left_out_of_the_report_are_caught(tmp_path: Path) -> None:
    j = _journal()
    shown = Journal()
    for r in j.records:
        if r.result == "success":
            shown._record(r)
    for f in j.first_syncs.values():
        shown._first(f)
    summary = summarize(shown.records, [], first_syncs=list(shown.first_syncs.values()))
    paths = write_records(tmp_path, shown.records, [], list(shown.first_syncs.values()))
    console = Console(width=LEDGER_TABLE_WIDTH, record=True, file=io.StringIO())
    render_table(summary, console=console)
    result = check_report(j, summary, paths["syncs"], paths["first_syncs"], console.export_text(),
                          class_table(summary))
    assert result.examples[:5] == [
        "technician syncs: summary.json shows 7, the ledger 8", "technician failed: summary.json shows 0, the ledger 1",
        "technician failures_by_cause: summary.json shows {}, the ledger {'STORAGE_FULL': 1}",
        "technician syncs: syncs.csv shows 7, the ledger 8", "technician failed: syncs.csv shows 0, the ledger 1"]
    assert result.violations >= 7  # and the console's and the HTML table's "Syncs / failed" and causes


def test_a_row_at_the_servers_version_with_other_contents_is_altered_and_an_own_write_is_not_compared() -> None:
    """The end-of-run check compares contents where the device received the row: the same version
    with another body fails ("altered"); a row the device wrote itself (digest 0) is left to versions."""
    from simulator.check import compare
    from simulator.device.store import LocalStore
    from simulator.protocol.odata import row_digest

    body = b'{"@odata.etag":"W/\\"7\\"","accountid":"a","name":"Contoso"}'
    store = LocalStore(10**6)
    store.put_many("account", ["a", "b", "c"], [7, 7, 7], [60, 60, 60],
                   [row_digest(body), row_digest(body.replace(b"Contoso", b"Fabrikam")), 1])
    store.set_version("account", "c", 8)  # the device's own write: contents not known
    expected = {"account": {"a": 7, "b": 7, "c": 8}}
    contents = {"account": {"a": row_digest(body), "b": row_digest(body), "c": 12345}}
    view = compare("d1", store.snapshot(), expected, 0, contents)
    assert (view.missing, view.extra, view.stale, view.altered) == (0, 0, 0, 1)
    assert view.examples[0].startswith("account/b: v7 held with other contents than the server's")
    assert store.version("account", "c") == 8 and compare("d1", store.snapshot(), expected, 0).ok
