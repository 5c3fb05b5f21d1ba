"""What syncs and edits become in Locust's statistics: one request entry each, with names a
performance engineer reads at a glance (docs/locust.md lists them).

- `FIRST_SYNC`, `DELTA_SYNC`, `FORCED_SYNC` (type SYNC): one per sync attempt. response_time is the
  sync's lived duration in ms (what syncsim reports, waits included), response_length its bytes
  (data and files). A failed attempt is a failure whose message is its error code. The attempt that
  completes a first sync reports the whole first sync (from the first request of the first attempt),
  as syncsim's first-sync time does.
- `FIRST_SYNC metadata|data|files` (type PHASE): the completed first sync's phases.
- `upload batch` / `upload one_by_one` (type UPLOAD): a sync's upload phase, when it sent edits.
- `edit applied`, `edit conflict`, `edit rejected` (type EDIT): one per uploaded edit by outcome;
  conflicts and rejections are failures (message CONFLICT, or the Dataverse error code), so their
  rates show in Locust's UI, CSV and report. response_time 0.
- `FIRST_SYNC unfinished` (type SYNC): at test stop, a first sync that had not completed (failure,
  message UNFINISHED or its last error).

Syncs of the quiet period after the test (`final`) are not entries: they are not part of sync-time
statistics in syncsim either.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.metrics import FirstSync, SyncRecord


@dataclass(frozen=True, slots=True)
class Entry:
    request_type: str
    name: str
    response_time_ms: float
    response_length: int
    error: str | None = None  # the failure's message; None for a success


def sync_entries(record: SyncRecord, first: FirstSync | None, upload_mode: str) -> list[Entry]:
    """The entries of one sync attempt; `first` is the device's completed first sync when this
    attempt completed it."""
    if record.final:
        return []
    failed = record.result == "failed"
    if record.mode == "FIRST_SYNC" and first is not None and not failed:
        out = [Entry("SYNC", "FIRST_SYNC", first.duration_s * 1000, first.bytes + first.file_bytes)]
        out += [Entry("PHASE", f"FIRST_SYNC {phase}", s * 1000, 0) for phase, s in first.phases.items()]
    else:
        length = sum(record.bytes_by_table.values()) + record.file_bytes
        out = [Entry("SYNC", record.mode, record.duration_s * 1000, length,
                     (record.error_code or "FAILED") if failed else None)]
    if record.uploaded:
        out.append(Entry("UPLOAD", f"upload {upload_mode}", record.phases.get("upload", 0.0) * 1000, 0))
    out += [Entry("EDIT", "edit applied", 0, 0)] * max(0, record.uploaded - record.conflicts - record.rejections)
    out += [Entry("EDIT", "edit conflict", 0, 0, "CONFLICT")] * record.conflicts
    for code, n in record.rejection_codes.items():
        out += [Entry("EDIT", "edit rejected", 0, 0, code)] * n
    return out


def unfinished_entry(first: FirstSync) -> Entry:
    """A first sync still running (or failed) when the test stopped."""
    return Entry("SYNC", "FIRST_SYNC unfinished", first.duration_s * 1000, first.bytes + first.file_bytes,
                 first.error_code or "UNFINISHED")
