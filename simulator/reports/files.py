"""Write a summary as JSON, and sync records / device events as CSV (and read them back).

CSV round trip: `read_records_csv(write_csv(records))` gives records with the same scalar fields,
phases (every phase in `PHASES`; an empty cell means the phase was not recorded), the device
processing per phase (`processing_s`, "phase:seconds;..." like `waits_s`), `rows` and
`bytes`. Per-table detail collapses to totals: `rows_by_table` becomes `{ALL_TABLES: rows}` and
`bytes_by_table` becomes `{ALL_TABLES: bytes - file_bytes}` (empty when zero), so summaries rebuilt
from a CSV equal the ones built from the original records. Floats are written with `repr`, exact.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

from simulator.metrics import PHASES, DeviceEvent, FirstSync, SyncRecord, TimelineSample
from simulator.reports.inputs import (
    EventLike,
    FirstSyncLike,
    RecordLike,
    as_events,
    as_first_syncs,
    as_records,
)

ALL_TABLES = "*"  # table key of collapsed per-table counts in records read back from CSV

RECORD_COLUMNS = (
    "device", "user", "user_class", "mode", "result", "start", "duration_s", "active_s",
    *(f"phase_{phase}_s" for phase in PHASES),
    "rows", "bytes", "file_bytes", "uploaded", "applied", "conflicts", "rejections", "restarts",
    "error_code", "network", "storage_used_bytes", "storage_capacity_bytes", "rejection_codes",
    "waits_s", "refetched_bytes", "final", "ended_at", "processing_s",
)  # fmt: skip
FIRST_SYNC_COLUMNS = (
    "device", "user", "user_class", "network", "start", "duration_s", "finished", "after_end", "attempts",
    *(f"phase_{phase}_s" for phase in ("metadata", "data", "files")),
    "waits_s", "rows", "bytes", "file_bytes", "refetched_bytes", "error_code", "processing_s",
)  # fmt: skip
EVENT_COLUMNS = ("device", "user_class", "kind", "at", "detail")
_TEXT = ("device", "user", "user_class", "mode", "result", "network")
_FLOATS = ("start", "duration_s", "active_s", "ended_at")
_INTS = ("file_bytes", "uploaded", "applied", "conflicts", "rejections", "restarts",
         "storage_used_bytes", "storage_capacity_bytes", "refetched_bytes")  # fmt: skip


def _pairs(counts: Mapping[str, float]) -> str:
    """A small mapping as one cell: "k1:v1;k2:v2" (sorted by key, floats exact)."""
    return ";".join(f"{k}:{v!r}" for k, v in sorted(counts.items()))


def _unpairs(cell: str, kind: type = float) -> dict[str, Any]:
    return {k: kind(v) for k, _, v in (p.partition(":") for p in cell.split(";") if p)}


def write_json(summary: Mapping[str, Any], path: Path) -> Path:
    """Write `summary` as indented JSON (orjson) to `path`, creating its folder; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    path.write_bytes(orjson.dumps(summary, option=options) + b"\n")
    return path


def record_row(record: SyncRecord) -> dict[str, Any]:
    """The CSV cells of one record (seconds, bytes, counts; empty for a missing phase or code)."""
    row: dict[str, Any] = {name: getattr(record, name) for name in (*_TEXT, *_FLOATS, *_INTS)}
    for phase in PHASES:
        value = record.phases.get(phase)
        row[f"phase_{phase}_s"] = "" if value is None else repr(float(value))
    row.update(rows=record.rows, bytes=record.bytes, error_code=record.error_code or "",
               rejection_codes=_pairs(record.rejection_codes), waits_s=_pairs(record.waits_s),
               final=int(record.final), processing_s=_pairs(record.processing_s))
    for name in _FLOATS:
        row[name] = repr(float(row[name]))
    return row


def write_csv(records: Iterable[RecordLike], path: Path) -> Path:
    """Write one CSV row per sync record (columns `RECORD_COLUMNS`) to `path`; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RECORD_COLUMNS)
        writer.writeheader()
        writer.writerows(record_row(r) for r in as_records(records))
    return path


def parse_record_row(row: Mapping[str, str]) -> SyncRecord:
    """A `SyncRecord` from one CSV row written by `write_csv` (per-table counts collapsed)."""
    rows, total_bytes, file_bytes = int(row["rows"]), int(row["bytes"]), int(row["file_bytes"])
    table_bytes = total_bytes - file_bytes
    phases = {p: float(row[f"phase_{p}_s"]) for p in PHASES if row.get(f"phase_{p}_s", "") != ""}
    scalars: dict[str, Any] = {name: row[name] for name in _TEXT}
    scalars |= {name: float(row[name]) for name in _FLOATS}
    scalars |= {name: int(row[name]) for name in _INTS}
    return SyncRecord(
        **scalars,
        phases=phases,
        rows_by_table={ALL_TABLES: rows} if rows else {},
        bytes_by_table={ALL_TABLES: table_bytes} if table_bytes else {},
        error_code=row["error_code"] or None,
        rejection_codes=_unpairs(row.get("rejection_codes", ""), int),
        waits_s=_unpairs(row.get("waits_s", "")),
        final=row.get("final", "0") == "1",
        processing_s=_unpairs(row.get("processing_s", "")),
    )


def read_records_csv(path: Path) -> list[SyncRecord]:
    """Read sync records written by `write_csv` (see the module docstring for what collapses)."""
    with path.open(newline="", encoding="utf-8") as f:
        return [parse_record_row(row) for row in csv.DictReader(f)]


def write_events_csv(events: Iterable[EventLike], path: Path) -> Path:
    """Write one CSV row per device event (columns `EVENT_COLUMNS`, `at` in epoch s); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=EVENT_COLUMNS)
        writer.writeheader()
        for event in as_events(events):
            writer.writerow({**event.to_dict(), "at": repr(float(event.at))})
    return path


def read_events_csv(path: Path) -> list[DeviceEvent]:
    """Read device events written by `write_events_csv`."""
    with path.open(newline="", encoding="utf-8") as f:
        return [
            DeviceEvent(
                device=r["device"],
                user_class=r["user_class"],
                kind=r["kind"],  # type: ignore[arg-type]
                at=float(r["at"]),
                detail=r["detail"],
            )
            for r in csv.DictReader(f)
        ]


def write_first_syncs_csv(first_syncs: Iterable[FirstSyncLike], path: Path) -> Path:
    """Write one CSV row per device's first sync (columns `FIRST_SYNC_COLUMNS`); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIRST_SYNC_COLUMNS)
        writer.writeheader()
        for first in as_first_syncs(first_syncs):
            row = {k: v for k, v in first.to_dict().items() if k in FIRST_SYNC_COLUMNS}
            for phase in ("metadata", "data", "files"):
                value = first.phases.get(phase)
                row[f"phase_{phase}_s"] = "" if value is None else repr(float(value))
            row.update(start=repr(float(first.start)), duration_s=repr(float(first.duration_s)),
                       finished=int(first.finished), after_end=int(first.after_end), waits_s=_pairs(first.waits_s), error_code=first.error_code or "",
                       processing_s=_pairs(first.processing_s))
            writer.writerow(row)
    return path


def read_first_syncs_csv(path: Path) -> list[FirstSync]:
    """Read first syncs written by `write_first_syncs_csv`."""
    with path.open(newline="", encoding="utf-8") as f:
        return [
            FirstSync(
                device=r["device"], user=r["user"], user_class=r["user_class"], network=r["network"],
                start=float(r["start"]), duration_s=float(r["duration_s"]), finished=r["finished"] == "1",
                attempts=int(r["attempts"]),
                phases={p: float(r[f"phase_{p}_s"]) for p in ("metadata", "data", "files") if r[f"phase_{p}_s"]},
                waits_s=_unpairs(r["waits_s"]), rows=int(r["rows"]), bytes=int(r["bytes"]),
                file_bytes=int(r["file_bytes"]), refetched_bytes=int(r["refetched_bytes"]),
                error_code=r["error_code"] or None, processing_s=_unpairs(r.get("processing_s", "")),
                after_end=r.get("after_end") == "1",
            )
            for r in csv.DictReader(f)
        ]


def write_timeline_csv(samples: Iterable[TimelineSample], path: Path) -> Path:
    """Write the run's timeline, one row per sample (columns: the fields of `TimelineSample`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(TimelineSample)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows([getattr(s, name) for name in names] for s in samples)
    return path
