"""Write every report file of a run into one folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simulator.metrics import TimelineSample
from simulator.reports.files import (
    write_csv,
    write_events_csv,
    write_first_syncs_csv,
    write_json,
    write_timeline_csv,
)
from simulator.reports.html import write_html
from simulator.reports.inputs import EventLike, FirstSyncLike, RecordLike, as_first_syncs, as_records

FILE_NAMES = {"summary": "summary.json", "syncs": "syncs.csv", "first_syncs": "first_syncs.csv",
              "events": "events.csv", "timeline": "timeline.csv", "html": "report.html"}


def write_all(
    out_dir: Path,
    summary: Mapping[str, Any],
    records: Sequence[RecordLike],
    events: Sequence[EventLike],
    title: str,
    first_syncs: Sequence[FirstSyncLike] = (),
    timeline: Sequence[TimelineSample] = (),
) -> dict[str, Path]:
    """Write summary.json, syncs.csv, first_syncs.csv, events.csv, timeline.csv and report.html into `out_dir`.

    The folder is created if needed. Returns the written paths keyed as `FILE_NAMES`.
    """
    paths = write_records(out_dir, records, events, first_syncs, timeline)
    write_summary(paths, summary, records, title, first_syncs, timeline)
    return paths


def report_paths(out_dir: Path) -> dict[str, Path]:
    """Every report file of a run in `out_dir`, keyed as `FILE_NAMES`."""
    return {key: out_dir / name for key, name in FILE_NAMES.items()}


def write_records(out_dir: Path, records: Sequence[RecordLike], events: Sequence[EventLike],
                  first_syncs: Sequence[FirstSyncLike] = (), timeline: Sequence[TimelineSample] = ()
                  ) -> dict[str, Path]:
    """The run's records: syncs.csv, first_syncs.csv, events.csv and timeline.csv (first, so the
    ledger can read them back before the summary is written). Returns every path as `FILE_NAMES`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_paths(out_dir)
    write_csv(as_records(records), paths["syncs"])
    write_first_syncs_csv(as_first_syncs(first_syncs), paths["first_syncs"])
    write_events_csv(events, paths["events"])
    write_timeline_csv(timeline, paths["timeline"])
    return paths


def write_summary(paths: Mapping[str, Path], summary: Mapping[str, Any], records: Sequence[RecordLike], title: str,
                  first_syncs: Sequence[FirstSyncLike] = (), timeline: Sequence[TimelineSample] = ()) -> None:
    """summary.json and report.html, at the paths `write_records` gave."""
    write_json(summary, paths["summary"])
    write_html(summary, as_records(records), paths["html"], title, as_first_syncs(first_syncs), timeline)
