"""Accept recorded metrics either as dataclasses or as their `to_dict()` forms.

Reports read only recorded metrics (`SyncRecord`, `FirstSync`, `DeviceEvent`), never devices or the server, so a
Locust run, a standalone run and a CSV/JSON file all feed the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from simulator.metrics import DeviceEvent, FirstSync, SyncRecord

RecordLike = SyncRecord | Mapping[str, Any]
EventLike = DeviceEvent | Mapping[str, Any]
FirstSyncLike = FirstSync | Mapping[str, Any]


def as_records(records: Iterable[RecordLike]) -> list[SyncRecord]:
    """Return `records` as `SyncRecord` objects, converting dict forms."""
    return [r if isinstance(r, SyncRecord) else SyncRecord(**r) for r in records]


def as_events(events: Iterable[EventLike]) -> list[DeviceEvent]:
    """Return `events` as `DeviceEvent` objects, converting dict forms."""
    return [e if isinstance(e, DeviceEvent) else DeviceEvent(**e) for e in events]


def as_first_syncs(first_syncs: Iterable[FirstSyncLike]) -> list[FirstSync]:
    """Return `first_syncs` as `FirstSync` objects, converting dict forms."""
    return [f if isinstance(f, FirstSync) else FirstSync(**f) for f in first_syncs]
