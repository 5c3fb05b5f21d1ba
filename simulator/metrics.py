"""Sync records (one per sync, Power Apps telemetry style) and device events, appended as they happen.

Reports read only these records; `simulator.reports.summary` reduces them with numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from simulator.events import Events

SyncMode = Literal["FIRST_SYNC", "DELTA_SYNC", "FORCED_SYNC"]
SyncResult = Literal["success", "failed"]
EventKind = Literal["airplane_on", "airplane_off", "throttled", "storage_full", "restart", "retry", "edit", "token_expired"]
PHASES = ("metadata", "data", "files", "upload")


@dataclass(slots=True)
class SyncRecord:
    """One sync attempt. Times: `start` is scenario time (epoch s); durations are real seconds.

    `duration_s` runs from start to end including waits (throttling, retries, airplane);
    `active_s` is the time spent in requests. `phases` holds seconds per phase (metadata, data,
    files, upload). Bytes are response plus request body bytes.
    """

    device: str
    user: str
    user_class: str
    mode: SyncMode
    result: SyncResult
    start: float
    duration_s: float
    active_s: float
    phases: dict[str, float] = field(default_factory=dict)
    rows_by_table: dict[str, int] = field(default_factory=dict)
    bytes_by_table: dict[str, int] = field(default_factory=dict)
    file_bytes: int = 0
    uploaded: int = 0  # operations sent
    applied: int = 0  # operations the server applied
    conflicts: int = 0
    rejections: int = 0
    rejection_codes: dict[str, int] = field(default_factory=dict)  # Dataverse error code -> refused ops
    restarts: int = 0  # resumed after a cut (airplane mode or network failure)
    error_code: str | None = None  # e.g. STORAGE_FULL, NETWORK, THROTTLED, 0x80044352
    network: str = ""
    storage_used_bytes: int = 0
    storage_capacity_bytes: int = 0

    @property
    def rows(self) -> int:
        return sum(self.rows_by_table.values())

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_table.values()) + self.file_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class DeviceEvent:
    """Something that happened to a device: kind, scenario time, and a detail text."""

    device: str
    user_class: str
    kind: EventKind
    at: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Metrics:
    """Collects what devices report through `Events`."""

    def __init__(self, events: Events | None = None) -> None:
        self.records: list[SyncRecord] = []
        self.events: list[DeviceEvent] = []
        if events is not None:
            self.attach(events)

    def attach(self, events: Events) -> None:
        events.sync_finished.add_listener(lambda record: self.records.append(record))
        events.device_event.add_listener(lambda event: self.events.append(event))
