"""Reports built only from recorded metrics (`SyncRecord`, `FirstSync`, `DeviceEvent` or dict forms).

`summarize` reduces records to a per-user-class summary; `render_table` prints it; `write_all`
writes summary.json, syncs.csv, first_syncs.csv, events.csv and a self-contained report.html.
"""

from simulator.reports.console import render_generator, render_ledger, render_table
from simulator.reports.files import (
    read_events_csv,
    read_first_syncs_csv,
    read_records_csv,
    write_csv,
    write_events_csv,
    write_first_syncs_csv,
    write_json,
)
from simulator.reports.html import class_table, write_html
from simulator.reports.output import FILE_NAMES, report_paths, write_all, write_records, write_summary
from simulator.reports.summary import summarize

__all__ = [
    "FILE_NAMES",
    "class_table",
    "read_events_csv",
    "read_first_syncs_csv",
    "read_records_csv",
    "render_generator",
    "render_ledger",
    "render_table",
    "report_paths",
    "summarize",
    "write_all",
    "write_csv",
    "write_events_csv",
    "write_first_syncs_csv",
    "write_html",
    "write_json",
    "write_records",
    "write_summary",
]
