"""Sync records (one per sync, Power Apps telemetry style) and device events, appended as they happen.

Reports read only these records; `simulator.reports.summary` reduces them with numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from simulator.events import Events

SyncMode = Literal["FIRST_SYNC", "DELTA_SYNC", "FORCED_SYNC"]
SyncResult = Literal["success", "failed"]
EventKind = Literal["airplane_on", "airplane_off", "throttled", "storage_full", "restart", "retry", "edit", "token_expired",
                    "network_change"]
PHASES = ("metadata", "data", "files", "upload")


@dataclass(slots=True)
class SyncRecord:
    """One sync attempt. `start` is scenario time (epoch s); durations are lived seconds.

    Lived seconds are what the device's user lives through: requests, transfers and the device's
    own work at their real length, plus every wait inside the sync (Retry-After, backoff, offline
    until the network is back) at its full scenario length, whatever the time_scale. `duration_s`
    runs from the sync's start to its end; `waits_s` holds the waits inside it by kind
    (retry_after, backoff, offline); `active_s` is the real time spent in requests. `phases` holds
    lived seconds per phase (metadata, data, files, upload); `processing_s` the seconds of the
    device's own work inside each phase (storing rows, writing files, reading metadata; included
    in `phases` and `duration_s`, absent when none). Bytes are response plus request body
    bytes; `refetched_bytes` were received by requests that were cut and sent again. `final` marks
    the end-of-run syncs of the quiet period (not part of sync-time statistics).
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
    waits_s: dict[str, float] = field(default_factory=dict)
    refetched_bytes: int = 0
    final: bool = False
    ended_at: float = 0.0  # lived seconds on the device's timeline (clock.Timeline.now()) at the end
    processing_s: dict[str, float] = field(default_factory=dict)  # phase -> device processing inside it

    @property
    def rows(self) -> int:
        return sum(self.rows_by_table.values())

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_table.values()) + self.file_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class FirstSync:
    """A device's first sync as its user lives it, over every attempt it took.

    `duration_s` is lived seconds from the first request of the first attempt (sent, even if it was
    then cut) to the end of the attempt that completed it; or, when `finished` is False, to the end of the run. It includes the
    pauses between attempts (`waits_s["between_attempts"]`, the device's idle time after a failed
    attempt) and the waits inside attempts (retry_after, backoff, offline). `phases` sums lived
    seconds per phase (metadata, data, files) over the attempts, and `processing_s` the device's own
    work inside each phase (included in `phases`); rows and bytes are everything the
    attempts downloaded; `refetched_bytes` were received by cut requests and fetched again.
    `error_code` is the cause of the last failed attempt, if any. `start` is scenario time.
    `after_end`: completed after the scenario's end, by a final sync of the quiet period (it is one
    first sync all the same, timed and counted whole); only a first sync that never completes is
    unfinished (`finished` False, timed to the end of the run).
    """

    device: str
    user: str
    user_class: str
    network: str
    start: float
    duration_s: float
    finished: bool
    attempts: int
    phases: dict[str, float] = field(default_factory=dict)
    waits_s: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    bytes: int = 0
    file_bytes: int = 0
    refetched_bytes: int = 0
    error_code: str | None = None
    processing_s: dict[str, float] = field(default_factory=dict)  # phase -> device processing inside it
    after_end: bool = False  # completed in the quiet period, after the scenario's end

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TimelineSample:
    """One second of a run. `t` is scenario seconds since the run's start; rates are per real second."""

    t: float
    devices_online: int
    devices_offline: int
    devices_syncing: int
    syncs_done: int
    rows_per_s: float
    bytes_per_s: float
    throttled: int  # 429s the server answered in this second
    gen_loop_lag_ms: float
    gen_cpu: float
    gen_peak_rss_mb: float
    server_loop_lag_ms: float | None
    server_cpu: float | None
    server_peak_rss_mb: float | None

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
        self.first_syncs: list[FirstSync] = []
        self.events: list[DeviceEvent] = []
        if events is not None:
            self.attach(events)

    def attach(self, events: Events) -> None:
        events.sync_finished.add_listener(lambda record: self.records.append(record))
        events.first_sync_done.add_listener(lambda record: self.first_syncs.append(record))
        events.device_event.add_listener(lambda event: self.events.append(event))
