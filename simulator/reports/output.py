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
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILE_NAMES.items()}
    recs, firsts = as_records(records), as_first_syncs(first_syncs)
    write_json(summary, paths["summary"])
    write_csv(recs, paths["syncs"])
    write_first_syncs_csv(firsts, paths["first_syncs"])
    write_events_csv(events, paths["events"])
    write_timeline_csv(timeline, paths["timeline"])
    write_html(summary, recs, paths["html"], title, firsts, timeline)
    return paths
