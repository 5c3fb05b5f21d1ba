"""Reduce sync records, first syncs and device events to a per-user-class summary (a JSON dict).

One pass groups the records by user class (and device); numpy then computes the percentiles of
each group (`numpy.percentile`, method "linear"). Durations are lived seconds (see
`simulator.metrics.SyncRecord`), sizes bytes, rates are fractions (0..1). Floats are rounded to 4
decimals; a statistic over no values is `None`.

First-sync figures come from `FirstSync` records (one per device, over all its attempts); the
quiet period's final syncs (`SyncRecord.final`) count for uploads, conflicts and rejections (they
deliver edits made during the run) but not for sync times or failures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.metrics import DeviceEvent, FirstSync, SyncRecord
from simulator.reports.inputs import (
    EventLike,
    FirstSyncLike,
    RecordLike,
    as_events,
    as_first_syncs,
    as_records,
)

FIRST_SYNC_PHASES = ("metadata", "data", "files")
UNKNOWN_CAUSE = "UNKNOWN"  # failures_by_cause key for a failed record without an error_code
STILL_RUNNING = "STILL_RUNNING"  # an unfinished first sync that had not failed: the run's time was up
RESERVED_KEYS = ("classes", "totals", "mode_counts")
DIGITS = 4


@dataclass(slots=True)
class _ClassGroup:
    """What one pass over the records collects for one user class."""

    devices: set[str] = field(default_factory=set)
    syncs: int = 0
    final_syncs: int = 0
    failed: int = 0
    durations: dict[str, list[float]] = field(default_factory=dict)  # successful syncs, by mode
    phases: dict[str, list[float]] = field(default_factory=dict)  # finished first syncs, by phase
    first: list[FirstSync] = field(default_factory=list)  # finished first syncs
    unfinished: list[FirstSync] = field(default_factory=list)  # first syncs not finished by the end of the run
    uploaded: int = 0
    conflicts: int = 0
    rejections: int = 0
    restarts: int = 0
    rows: int = 0
    bytes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    rejection_codes: Counter[str] = field(default_factory=Counter)
    device_bytes: dict[str, int] = field(default_factory=dict)  # device -> all bytes moved
    last: dict[str, SyncRecord] = field(default_factory=dict)  # device -> latest record reporting storage
    events: Counter[str] = field(default_factory=Counter)

    def add(self, record: SyncRecord) -> None:
        """Fold one sync record into the group."""
        self.devices.add(record.device)
        self.syncs += 1
        self.final_syncs += record.final
        self.uploaded += record.uploaded
        self.conflicts += record.conflicts
        self.rejections += record.rejections
        self.rejection_codes.update(record.rejection_codes)
        self.restarts += record.restarts
        rows, moved = record.rows, record.bytes
        self.rows += rows
        self.bytes += moved
        self.device_bytes[record.device] = self.device_bytes.get(record.device, 0) + moved
        previous = self.last.get(record.device)
        if previous is None or _storage_key(record) >= _storage_key(previous):
            self.last[record.device] = record
        if record.final:
            return
        if record.result != "success":
            self.failed += 1
            self.failures[record.error_code or UNKNOWN_CAUSE] += 1
            return
        self.durations.setdefault(record.mode, []).append(record.duration_s)

    def add_first(self, first: FirstSync) -> None:
        """Fold one device's first sync into the group."""
        self.devices.add(first.device)
        if not first.finished:
            self.unfinished.append(first)
            return
        self.first.append(first)
        for phase in FIRST_SYNC_PHASES:
            self.phases.setdefault(phase, []).append(first.phases.get(phase, 0.0))

    def add_event(self, event: DeviceEvent) -> None:
        """Fold one device event into the group."""
        self.devices.add(event.device)
        self.events[event.kind] += 1


def _storage_key(record: SyncRecord) -> tuple[bool, float]:
    """Order records for `storage`: those reporting a capacity first, then by start time."""
    return record.storage_capacity_bytes > 0, record.start


def _round(value: float) -> float:
    return round(float(value), DIGITS)


def stats(values: Iterable[float], keys: Sequence[str]) -> dict[str, float | int | None]:
    """Statistics of `values` for `keys` among count, mean, max and pNN (percentile NN, linear).

    With no values, count is 0 and every other statistic is `None`.
    """
    array = np.fromiter(values, dtype=float)
    if array.size == 0:
        return {key: (0 if key == "count" else None) for key in keys}
    wanted = [float(key[1:]) for key in keys if key.startswith("p")]
    percentiles = iter(np.percentile(array, wanted, method="linear")) if wanted else iter(())
    out: dict[str, float | int | None] = {}
    for key in keys:
        if key == "count":
            out[key] = int(array.size)
        elif key == "mean":
            out[key] = _round(array.mean())
        elif key == "max":
            out[key] = _round(array.max())
        else:
            out[key] = _round(next(percentiles))
    return out


def _rate(part: int, whole: int) -> float:
    return _round(part / whole) if whole else 0.0


def _storage(last: Mapping[str, SyncRecord]) -> dict[str, float | None]:
    """Storage of each device's latest record: used and capacity in bytes, used share 0..1."""
    used = np.array([r.storage_used_bytes for r in last.values()], dtype=float)
    capacity = np.array([r.storage_capacity_bytes for r in last.values()], dtype=float)
    known = capacity > 0
    return {
        "used_p50": stats(used, ["p50"])["p50"],
        "used_max": stats(used, ["max"])["max"],
        "capacity_p50": stats(capacity, ["p50"])["p50"],
        "used_share_max": _round((used[known] / capacity[known]).max()) if known.any() else None,
    }


def _processing(firsts: Sequence[FirstSync]) -> dict[str, Any]:
    """The device's own work in first syncs, per phase and in total (empty when it cost nothing)."""
    phases = [p for p in FIRST_SYNC_PHASES if any(f.processing_s.get(p) for f in firsts)]
    if not phases:
        return {}
    keys = ["p50", "p95", "max"]
    out: dict[str, Any] = {p: stats((f.processing_s.get(p, 0.0) for f in firsts), keys) for p in phases}
    out["total"] = stats((sum(f.processing_s.values()) for f in firsts), keys)
    return out


def _first_sync_detail(group: _ClassGroup) -> dict[str, Any]:
    """Beside first-sync time: attempts, waits by kind, device processing by phase, bytes fetched
    again, unfinished first syncs."""
    kinds = sorted({k for f in group.first for k in f.waits_s})
    return {
        "attempts": stats((f.attempts for f in group.first), ["mean", "max"]),
        "waits_s": {k: stats((f.waits_s.get(k, 0.0) for f in group.first), ["p50", "p95", "max"]) for k in kinds},
        "processing_s": _processing(group.first),
        "refetched_bytes": sum(f.refetched_bytes for f in group.first),
        "completed_after_end": sum(1 for f in group.first if f.after_end),  # in the quiet period
        "unfinished": {"count": len(group.unfinished),
                       "elapsed_max": _round(max(f.duration_s for f in group.unfinished)) if group.unfinished else None,
                       "by_cause": dict(Counter(f.error_code or STILL_RUNNING for f in group.unfinished)),
                       "devices": sorted(f.device for f in group.unfinished)[:20]},
    }


def _class_summary(group: _ClassGroup) -> dict[str, Any]:
    durations = group.durations
    return {
        "devices": len(group.devices),
        "syncs": group.syncs,
        "final_syncs": group.final_syncs,
        "failed": group.failed,
        "first_sync": stats((f.duration_s for f in group.first), ["count", "p50", "p95", "p99", "max", "mean"]),
        "first_sync_detail": _first_sync_detail(group),
        "first_sync_phases": {
            phase: stats(group.phases.get(phase, []), ["p50", "p95"]) for phase in FIRST_SYNC_PHASES
        },
        "delta_sync": stats(durations.get("DELTA_SYNC", []), ["count", "p50", "p95", "p99", "max"]),
        "forced_sync": stats(durations.get("FORCED_SYNC", []), ["count", "p50", "p95"]),
        "uploaded": group.uploaded,
        "conflicts": group.conflicts,
        "rejections": group.rejections,
        "conflict_rate": _rate(group.conflicts, group.uploaded),
        "rejection_rate": _rate(group.rejections, group.uploaded),
        "failures_by_cause": dict(group.failures.most_common()),
        "rejections_by_cause": dict(group.rejection_codes.most_common()),
        "rows_per_device": stats((f.rows for f in group.first), ["p50", "max"]),
        "bytes_per_device": stats(group.device_bytes.values(), ["p50", "p95", "max"]),
        "storage": _storage(group.last),
        "restarts": group.restarts,
        "events": dict(sorted(group.events.items())),
    }


def _totals(groups: Mapping[str, _ClassGroup]) -> dict[str, int]:
    devices: set[str] = set()
    for group in groups.values():
        devices |= group.devices
    total = {
        key: sum(getattr(g, key) for g in groups.values())
        for key in ("syncs", "failed", "uploaded", "conflicts", "rejections", "rows", "bytes")
    }
    return {"devices": len(devices), **total}


def summarize(
    records: Sequence[RecordLike],
    events: Sequence[EventLike],
    extra: Mapping[str, Any] | None = None,
    first_syncs: Sequence[FirstSyncLike] = (),
) -> dict[str, Any]:
    """Summarise sync records, first syncs and device events per user class.

    Returns `{"classes": {user_class: {...}}, "totals": {...}, "mode_counts": {mode: n}}` merged
    with `extra` at the top level (`extra` may not use those three keys). Classes are sorted by
    name; a class seen only in events has zero syncs and `None` statistics. Durations in lived
    seconds, bytes in bytes, rates as fractions of uploaded operations. `first_sync`,
    `first_sync_phases` and `rows_per_device` cover finished first syncs (`first_syncs`), and so
    does `first_sync_detail.processing_s` (the device's own work inside those phases, per phase and
    in total; empty when it cost nothing);
    `first_sync_detail.unfinished` lists the others. `bytes_per_device` and `storage` cover every
    device with a record; `storage` reads each device's latest record that reports a capacity (its
    latest record when none does).
    """
    groups: dict[str, _ClassGroup] = {}
    modes: Counter[str] = Counter()
    for record in as_records(records):
        groups.setdefault(record.user_class, _ClassGroup()).add(record)
        modes[record.mode] += 1
    for first in as_first_syncs(first_syncs):
        groups.setdefault(first.user_class, _ClassGroup()).add_first(first)
    for event in as_events(events):
        groups.setdefault(event.user_class, _ClassGroup()).add_event(event)
    summary: dict[str, Any] = {
        "classes": {name: _class_summary(groups[name]) for name in sorted(groups)},
        "totals": _totals(groups),
        "mode_counts": dict(sorted(modes.items())),
    }
    clash = set(extra or {}) & set(RESERVED_KEYS)
    if clash:
        raise ValueError(f"extra may not override summary keys: {sorted(clash)}")
    summary.update(extra or {})
    return summary
