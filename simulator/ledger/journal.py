"""What devices did, recorded from the engine's events, independently of the numbers they report.

The journal keeps each edit a device accepted (its intent), how it was settled (the server's answer
as the device saw it, with the base version it was sent with), the lived time of every request of
each device, and the device-reported figures it will be checked against (sync records, first
syncs). It reads only events; it never looks inside a device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.events import Events
from simulator.metrics import FirstSync, SyncRecord
from simulator.protocol.odata import body_digest, values_digest

Probe = Callable[[], dict[str, tuple[int, frozenset[str]]]]


@dataclass(slots=True)
class Intent:
    """An edit a device accepted into its outbox, and how it was settled (None while pending)."""

    device: str
    op: str
    kind: str
    table: str
    row_id: str
    digest: int | None
    settled: bool = False
    cancelled: bool = False  # a delete of a row created offline and never sent cancelled it
    merged_into: str | None = None  # the op that carries this edit (merged into a waiting op of its row)
    status: int = 0
    version: int | None = None
    conflict: bool = False
    code: str | None = None
    base: int | None = None  # the version it was sent with
    values: int | None = None  # protocol.odata.values_digest of its body: the plain columns it set


@dataclass(slots=True)
class Journal:
    """Listens to a fleet's events (attach) and keeps what the ledger checks."""

    intents: dict[str, Intent] = field(default_factory=dict)  # op id -> intent
    settled_twice: list[str] = field(default_factory=list)  # op ids settled more than once
    records: list[SyncRecord] = field(default_factory=list)
    first_syncs: dict[str, FirstSync] = field(default_factory=dict)  # device -> its reported first sync
    first_sync_spans: dict[str, float] = field(default_factory=dict)  # device -> first request to completion
    over_quota: list[str] = field(default_factory=list)  # "device: used > capacity" seen in a record
    held_after_sync: dict[str, list[dict[str, tuple[int, frozenset[str]]]]] = field(default_factory=dict)
    throttled: int = 0  # 429 answers devices met (each must be waited out: `throttling_honoured`)
    device_classes: dict[str, str] = field(default_factory=dict)  # every device seen (records, first syncs, events)
    # per sync record: (device, start, conflicts it reports, ops answered for it): its count, op by op
    record_ops: list[tuple[str, float, int, list[str]]] = field(default_factory=list)
    _answered: dict[str, list[str]] = field(default_factory=dict)  # device -> ops answered since its last record
    _first_request: dict[str, float] = field(default_factory=dict)  # device -> lived start of its first request
    _probes: dict[str, Probe] = field(default_factory=dict)

    def watch(self, device: str, probe: Probe) -> None:
        """After each successful sync of `device`, keep what `probe` says it holds: {table: (token
        version, row ids)}. Used for devices whose user loses read access during the run."""
        self._probes[device] = probe

    def attach(self, events: Events) -> Journal:
        events.edit_made.add_listener(self._made)
        events.edit_merged.add_listener(self._merged)
        events.edit_settled.add_listener(self._settled)
        events.request.add_listener(self._request)
        events.sync_finished.add_listener(self._record)
        events.first_sync_done.add_listener(self._first)
        events.device_event.add_listener(self._device_event)
        return self

    def _device_event(self, event: Any) -> None:
        self.device_classes.setdefault(event.device, event.user_class)

    def _made(self, device: str, op: Any) -> None:
        digest = body_digest(op.payload) if op.payload is not None else None
        self.intents[op.op_id] = Intent(device, op.op_id, op.kind, op.table, op.row_id, digest,
                                        values=values_digest(op.payload))

    def _merged(self, device: str, op: Any, into: Any) -> None:
        intent, carrier = self.intents.get(op.op_id), self.intents.get(into.op_id)
        if intent is None or carrier is None:
            return
        intent.merged_into, intent.settled = into.op_id, True
        carrier.digest = body_digest(into.payload)  # the carrier now sends both edits
        carrier.values = values_digest(into.payload)

    def _settled(self, device: str, op: Any, base: int | None, outcome: tuple[Any, ...] | None) -> None:
        intent = self.intents.get(op.op_id)
        if intent is None:
            return
        if intent.settled:
            self.settled_twice.append(op.op_id)
        intent.settled, intent.base = True, base
        if outcome is None:
            intent.cancelled = True
        else:
            intent.status, intent.version, intent.conflict, intent.code = outcome
            self._answered.setdefault(device, []).append(op.op_id)

    def _request(self, device: str = "", started_at: float = 0.0, status: int = 0, **_: Any) -> None:
        self._first_request.setdefault(device, started_at)
        self.throttled += status == 429

    def _record(self, record: SyncRecord) -> None:
        self.records.append(record)
        self.device_classes.setdefault(record.device, record.user_class)
        ops = self._answered.pop(record.device, [])
        if ops or record.conflicts:  # a sync with no answered op and no conflict has nothing to compare
            self.record_ops.append((record.device, record.start, record.conflicts, ops))
        if record.storage_used_bytes > record.storage_capacity_bytes > 0:
            self.over_quota.append(f"{record.device}: {record.storage_used_bytes:,} bytes used, "
                                   f"capacity {record.storage_capacity_bytes:,}")
        probe = self._probes.get(record.device)
        if probe is not None and record.result == "success":
            self.held_after_sync.setdefault(record.device, []).append(probe())
        if record.mode == "FIRST_SYNC" and record.result == "success" and record.device not in self.first_sync_spans:
            first = self._first_request.get(record.device)
            if first is not None:
                self.first_sync_spans[record.device] = record.ended_at - first

    def _first(self, record: FirstSync) -> None:
        self.first_syncs[record.device] = record
        self.device_classes.setdefault(record.device, record.user_class)
