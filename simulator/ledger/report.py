"""The invariant "report matches the ledger": every figure a run shows, recomputed from the
journal (what devices recorded, as the events carried it; never from `Metrics` or the report's own
code), and compared with summary.json, syncs.csv and first_syncs.csv, the console table and the
HTML report's class table. A difference names the class, the figure, where it was shown and both
values.

The figures, per user class: devices; syncs (every record, final syncs included) and failed syncs
(outside the quiet period); failures by cause; first-sync p50/p95/p99 (completed first syncs) and
unfinished ones; delta-sync p95 (successful, outside the quiet period); conflict and rejection
rates (of uploaded operations); rows per device (p50 of completed first syncs) and MB per device
(p50 of every byte each device moved). Percentiles are linear (numpy's default).
"""

from __future__ import annotations

import csv
import html
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.ledger.checks import Invariant
from simulator.ledger.journal import Journal

REPORT_INVARIANT = "report_matches_ledger"  # its key among the ledger's invariants
DIGITS = 4  # summary.json publishes figures to 4 decimals, and the tables show those (rounded again)
TOLERANCE = 1e-4
UNKNOWN = "UNKNOWN"
MB = 1_000_000
DASH = "–"


@dataclass(slots=True)
class ClassFigures:
    """One class's figures as the ledger recomputes them (None: no value)."""

    devices: int = 0
    syncs: int = 0
    failed: int = 0
    failures_by_cause: dict[str, int] = field(default_factory=dict)
    first_p50: float | None = None
    first_p95: float | None = None
    first_p99: float | None = None
    first_count: int = 0
    unfinished: int = 0
    delta_p95: float | None = None
    conflict_rate: float = 0.0
    rejection_rate: float = 0.0
    rows_p50: float | None = None
    bytes_p50: float | None = None


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def recompute(journal: Journal) -> dict[str, ClassFigures]:
    """Every class's figures from the journal alone."""
    records = defaultdict(list)
    for r in journal.records:
        records[r.user_class].append(r)
    firsts = defaultdict(list)
    for f in journal.first_syncs.values():
        firsts[f.user_class].append(f)
    devices: dict[str, set[str]] = defaultdict(set)
    for device, cls in journal.device_classes.items():
        devices[cls].add(device)
    out: dict[str, ClassFigures] = {}
    for cls in sorted(set(records) | set(firsts) | set(devices)):
        rs, fs = records.get(cls, []), firsts.get(cls, [])
        failed = [r for r in rs if not r.final and r.result != "success"]
        done = [f for f in fs if f.finished]
        durations = [f.duration_s for f in done]
        deltas = [r.duration_s for r in rs if not r.final and r.result == "success" and r.mode == "DELTA_SYNC"]
        uploaded = sum(r.uploaded for r in rs)
        moved: dict[str, int] = defaultdict(int)
        for r in rs:
            moved[r.device] += sum(r.bytes_by_table.values()) + r.file_bytes
        out[cls] = ClassFigures(
            devices=len(devices.get(cls, set()) | {r.device for r in rs} | {f.device for f in fs}),
            syncs=len(rs), failed=len(failed),
            failures_by_cause=dict(Counter(r.error_code or UNKNOWN for r in failed)),
            first_p50=_pct(durations, 50), first_p95=_pct(durations, 95), first_p99=_pct(durations, 99),
            first_count=len(done), unfinished=len(fs) - len(done), delta_p95=_pct(deltas, 95),
            conflict_rate=sum(r.conflicts for r in rs) / uploaded if uploaded else 0.0,
            rejection_rate=sum(r.rejections for r in rs) / uploaded if uploaded else 0.0,
            rows_p50=_pct([f.rows for f in done], 50), bytes_p50=_pct(list(moved.values()), 50))
    return out


class _Compare:
    """Collects the comparisons of one run into an Invariant."""

    def __init__(self) -> None:
        self.result = Invariant()

    def same(self, where: str, cls: str, figure: str, shown: Any, ledger: Any) -> None:
        self.result.checked += 1
        if not _equal(shown, ledger):
            self.result.fail(f"{cls} {figure}: {where} shows {_show(shown)}, the ledger {_show(ledger)}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= TOLERANCE * max(1.0, abs(float(b)))
    return bool(a == b)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return repr(value) if isinstance(value, str) else str(value)


def check_report(journal: Journal, summary: Mapping[str, Any], syncs_csv: Path | None, first_syncs_csv: Path | None,
                 console_text: str, html_table: str) -> Invariant:
    """Compare every shown figure with the ledger's recomputation (see the module's docstring); the
    CSVs when given (None: they could not be written)."""
    want = recompute(journal)
    cmp = _Compare()
    shown_classes = summary.get("classes", {})
    for cls in sorted(set(want) | set(shown_classes)):
        if cls not in shown_classes or cls not in want:
            cmp.same("summary.json", cls, "class", "present" if cls in shown_classes else "absent",
                     "present" if cls in want else "absent")
    classes = sorted(set(want) & set(shown_classes))
    for cls in classes:
        _summary(cmp, cls, shown_classes[cls], want[cls])
    if syncs_csv is not None and first_syncs_csv is not None:
        _csvs(cmp, classes, want, syncs_csv, first_syncs_csv)
    for where, rows in (("the console table", _console_rows(console_text)),
                        ("the HTML report's class table", _html_rows(html_table))):
        for cls in classes:
            cells = rows.get(cls)
            if cells is None:
                cmp.same(where, cls, "row", "absent", "present")
                continue
            for figure, shown, expected in _cells(cells, want[cls]):
                cmp.same(where, cls, figure, shown, expected)
    return cmp.result


def _summary(cmp: _Compare, cls: str, c: Mapping[str, Any], w: ClassFigures) -> None:
    at = "summary.json"
    for figure, shown, expected in (
        ("devices", c["devices"], w.devices), ("syncs", c["syncs"], w.syncs), ("failed", c["failed"], w.failed),
        ("failures_by_cause", dict(c["failures_by_cause"]), w.failures_by_cause),
        ("first_sync.count", c["first_sync"]["count"], w.first_count),
        ("first_sync.p50", c["first_sync"]["p50"], w.first_p50),
        ("first_sync.p95", c["first_sync"]["p95"], w.first_p95),
        ("first_sync.p99", c["first_sync"]["p99"], w.first_p99),
        ("first_sync_detail.unfinished.count", c["first_sync_detail"]["unfinished"]["count"], w.unfinished),
        ("delta_sync.p95", c["delta_sync"]["p95"], w.delta_p95),
        ("conflict_rate", c["conflict_rate"], w.conflict_rate),
        ("rejection_rate", c["rejection_rate"], w.rejection_rate),
        ("rows_per_device.p50", c["rows_per_device"]["p50"], w.rows_p50),
        ("bytes_per_device.p50", c["bytes_per_device"]["p50"], w.bytes_p50),
    ):
        cmp.same(at, cls, figure, shown, expected)


def _csvs(cmp: _Compare, classes: list[str], want: Mapping[str, ClassFigures], syncs_csv: Path,
          first_syncs_csv: Path) -> None:
    """syncs.csv holds every sync record, first_syncs.csv every first sync: their counts, failures and
    first-sync percentiles are the ledger's."""
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with syncs_csv.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[row["user_class"]].append(row)
    firsts: dict[str, list[dict[str, str]]] = defaultdict(list)
    with first_syncs_csv.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            firsts[row["user_class"]].append(row)
    for cls in classes:
        w, rs, fs = want[cls], rows.get(cls, []), firsts.get(cls, [])
        failed = [r for r in rs if r["final"] != "1" and r["result"] != "success"]
        done = [float(r["duration_s"]) for r in fs if r["finished"] == "1"]
        for figure, shown, expected in (
            ("syncs", len(rs), w.syncs), ("failed", len(failed), w.failed),
            ("failures_by_cause", dict(Counter(r["error_code"] or UNKNOWN for r in failed)), w.failures_by_cause),
            ("first syncs completed", len(done), w.first_count),
            ("first_sync p95", _pct(done, 95), w.first_p95),
            ("unfinished", len(fs) - len(done), w.unfinished),
        ):
            cmp.same("syncs.csv" if figure in ("syncs", "failed", "failures_by_cause") else "first_syncs.csv",
                     cls, figure, shown, expected)


_CELLS: tuple[tuple[str, int, Callable[[ClassFigures], str]], ...] = (
    # (figure, column of the class table (console.HEADERS), the ledger's value as the table shows it)
    ("devices", 1, lambda w: str(w.devices)),
    ("syncs / failed", 2, lambda w: f"{w.syncs} / {w.failed}"),
    ("first sync p50", 3, lambda w: _seconds(w.first_p50)),
    ("first sync p95", 4, lambda w: _seconds(w.first_p95)),
    ("first sync p99", 5, lambda w: _seconds(w.first_p99)),
    ("unfinished", 6, lambda w: str(w.unfinished)),
    ("delta p95", 7, lambda w: _seconds(w.delta_p95)),
    ("conflicts (%)", 8, lambda w: f"{round(w.conflict_rate, DIGITS) * 100:.2f}"),
    ("rejections (%)", 9, lambda w: f"{round(w.rejection_rate, DIGITS) * 100:.2f}"),
    ("failures by cause", 10, lambda w: " ".join(f"{k}:{n}" for k, n in sorted(
        w.failures_by_cause.items(), key=lambda kv: (-kv[1], kv[0]))) or DASH),
    ("MB/device p50", 11, lambda w: DASH if w.bytes_p50 is None else f"{round(w.bytes_p50, DIGITS) / MB:.2f}"),
)


def _seconds(value: float | None) -> str:
    return DASH if value is None else f"{round(value, DIGITS):.2f}"


def _cells(cells: list[str], w: ClassFigures) -> list[tuple[str, str, str]]:
    out = []
    for figure, column, show in _CELLS:
        shown = cells[column] if column < len(cells) else "(no cell)"
        if figure == "failures by cause":  # the order of causes with equal counts is the table's own
            shown, expected = " ".join(sorted(shown.split())), " ".join(sorted(show(w).split()))
            out.append((figure, shown, expected))
            continue
        out.append((figure, shown, show(w)))
    return out


def _console_rows(text: str) -> dict[str, list[str]]:
    """The class table's rows in the console's text: user class -> cells."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if cells and cells[0]:
                rows[cells[0]] = cells
    return rows


_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


def _html_rows(table: str) -> dict[str, list[str]]:
    """The class table's rows in the HTML report: user class -> cells."""
    body = table.split("<tbody>", 1)[-1]
    rows: dict[str, list[str]] = {}
    for tr in _ROW.findall(body):
        cells = [html.unescape(c).strip() for c in _CELL.findall(tr)]
        if len(cells) > 1:
            rows[cells[0]] = cells
    return rows
