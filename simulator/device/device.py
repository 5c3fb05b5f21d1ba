"""One simulated phone or tablet: first sync, periodic sync cycles, offline edits, airplane mode.

A sync cycle uploads the outbox, then downloads changes. Syncs run at the user class's interval
with jitter, and also start when the network comes back. Every random draw comes from generators
seeded by the scenario; every wait goes through the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

import numpy as np

from simulator import seeds
from simulator.clock import Clock
from simulator.device.client import ApiClient, SyncFailed, Tally
from simulator.device.first_sync import FirstSyncTracker
from simulator.device.outbox import Op, OpKind, Outbox
from simulator.device.processing import NO_PROCESSING, Processing
from simulator.device.store import LocalStore, StorageFull
from simulator.device.sync import SyncEngine, TableInfo, UploadResult
from simulator.device.upload import Outcome
from simulator.events import Events
from simulator.metrics import DeviceEvent, EventKind, SyncMode, SyncRecord
from simulator.network import Link, NetworkModel
from simulator.protocol.ids import new_guid
from simulator.scenario import UserClass

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """Who and what a device is: names, storage in bytes, network preset, seed for its draws, and
    what its own work costs (storing rows, writing files, reading metadata)."""

    name: str
    user: str
    user_class: str
    storage_bytes: int
    network: str
    seed: tuple[int, ...]
    processing: Processing = NO_PROCESSING


@dataclass(slots=True)
class PhaseSplit:
    """One sync's lived seconds per phase, and the device processing inside each (from `tally`)."""

    tally: Tally
    phases: dict[str, float] = field(default_factory=dict)
    processing: dict[str, float] = field(default_factory=dict)


class EditSchedule:
    """When the user makes offline edits: a Poisson process in scenario time at the class's rate,
    running on across idle periods and syncs. Every edit due by a moment is made when the device
    looks (`take_due`), so a late wake-up (a busy generator, a long sync) delays edits but never
    loses them. The schedule only says when; `Device.edit()` makes an edit."""

    def __init__(self, edits_per_hour: float, rng: np.random.Generator) -> None:
        self.mean_gap_s = 3600.0 / edits_per_hour if edits_per_hour > 0 else None
        self.rng = rng
        self._next: float | None = None  # scenario time of the next edit

    def next_at(self, now: float) -> float:
        """Scenario time of the next edit (infinity when the class makes none)."""
        if self.mean_gap_s is None:
            return float("inf")
        if self._next is None:
            self._next = now + float(self.rng.exponential(self.mean_gap_s))
        return self._next

    def take_due(self, upto: float) -> int:
        """How many edits are due by `upto`; the schedule moves past them."""
        if self.mean_gap_s is None or self._next is None:
            return 0
        n = 0
        while self._next <= upto:
            n += 1
            self._next += float(self.rng.exponential(self.mean_gap_s))
        return n


class Device:
    """Drives the SyncEngine on a schedule and makes the user's edits."""

    def __init__(self, spec: DeviceSpec, cls: UserClass, api: ApiClient, link: Link, clock: Clock,
                 events: Events, origin: float, network_for: Callable[[str], NetworkModel] | None = None) -> None:
        self.spec = spec
        self.cls = cls
        self.api = api
        self.link = link
        self.clock = clock
        self.events = events
        self.origin = origin  # scenario start, epoch seconds (airplane windows are relative to it)
        self.store = LocalStore(spec.storage_bytes)
        self.outbox = Outbox()
        self.engine = SyncEngine(api, self.store, self.outbox, cls.profile, page_size=cls.behaviour.page_size,
                                 batch_uploads=cls.behaviour.upload_mode == "batch", processing=spec.processing)
        self.engine.answered = self._answered
        self.rng_sched, self.rng_edit, self.rng_air, self.rng_roam = seeds.device_rngs(spec.seed)
        self.network_for = network_for  # a network's model by name, for network changes
        self._network = spec.network  # the network the current (or last) sync started on
        self.gave_up: str | None = None  # cause when the device stopped syncing (storage full)
        self._wake: asyncio.Event | None = None
        self._edits = 0
        self.edits = EditSchedule(cls.behaviour.edits_per_hour, self.rng_edit)  # when the user edits
        self._carry = UploadResult()  # uploads answered during a sync that was cancelled before its record
        self.timeline = api.timeline  # lived time: every wait of this device goes through it
        self.first = FirstSyncTracker(spec.name, spec.user, spec.user_class, spec.network)
        self.final = False  # set for the end-of-run syncs of the quiet period
        self.past_end = False  # the scenario's time is up (end_of_run): what completes now, completes after its end
        self.syncing = False  # a sync is under way (the run's timeline counts them)

    # --- lifecycle -----------------------------------------------------------------------------
    async def run(self, stop_at: float) -> None:
        """Sync until scenario time `stop_at`: first sync at once, then every interval (+- jitter)."""
        airplane = asyncio.ensure_future(self._airplane(stop_at)) if self._has_airplane() else None
        b = self.cls.behaviour
        roams = self.network_for is not None and (b.network_changes or b.roaming is not None)
        roaming = asyncio.ensure_future(self._roam(stop_at)) if roams else None
        try:
            while self.clock.now() < stop_at and self.gave_up is None:
                if not self.link.online:
                    await self._offline_until_online(stop_at)
                    continue
                await self.sync_once()
                b = self.cls.behaviour
                interval = b.sync_interval_s * (1 + b.sync_jitter * (2 * self.rng_sched.random() - 1))
                await self._idle_until(min(stop_at, self.clock.now() + interval))
        finally:
            for task in (airplane, roaming):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def end_of_run(self) -> None:
        """The scenario's time is up: a first sync that completes from now on (in the quiet period)
        is marked as completed after the end."""
        self.past_end = True

    def first_sync_unfinished(self) -> None:
        """The run is over (after the quiet period): a first sync never completed is reported as
        unfinished, timed to now, with what its attempts did."""
        if not self.first.reported:
            self.events.first_sync_done.fire(
                record=self.first.result(self.timeline.now(), False, self.api.first_sent_at))

    async def final_sync(self, attempts: int = 3) -> SyncRecord | None:
        """End of run: back online, then sync until one succeeds (at most `attempts`). Records are final."""
        self.link.go_online()
        self._state()
        self.final = True
        if self.gave_up is not None:
            return None
        record = None
        for _ in range(attempts):
            record = await self.sync_once()
            if record.result == "success":
                break
        return record

    # --- one sync -------------------------------------------------------------------------------
    async def sync_once(self) -> SyncRecord:
        """One sync: upload the outbox, then download (first sync, delta, or forced resync)."""
        self.syncing = True
        self._state()
        try:
            return await self._sync()
        finally:
            self.syncing = False
            self._state()

    async def _sync(self) -> SyncRecord:
        st = self.engine.state
        mode: SyncMode = "DELTA_SYNC" if st.first_sync_done else "FIRST_SYNC"
        start, t0, waits0 = self.clock.now(), self.timeline.now(), dict(self.timeline.waited)
        self._network = self.link.model.name  # a sync is counted on the network it started on
        if mode == "FIRST_SYNC":
            self.first.begin(start, t0)
        tally, rows = Tally(), dict[str, int]()
        split = PhaseSplit(tally)
        up, self._carry = self._carry, UploadResult()
        error: str | None = None
        try:
            if mode == "FIRST_SYNC":
                await self._phase(split, "metadata", self.engine.metadata(tally))
                await self._phase(split, "data", self.engine.data(tally, rows))
            else:
                await self._phase(split, "upload", self.engine.upload(tally, up))
                if not st.resync and not await self._phase(split, "data", self.engine.delta(tally, rows)):
                    self._event("token_expired", "delta token expired: full resync")
                if st.resync:  # expired now, or a forced resync cut earlier
                    mode = "FORCED_SYNC"
                    await self._phase(split, "data", self.engine.resync(tally, rows))
            await self._phase(split, "files", self.engine.files(tally))
            st.first_sync_done = True
        except asyncio.CancelledError:
            self._carry = up  # the run is stopping this sync; its answered uploads go in the next record
            if mode == "FIRST_SYNC":  # what the cut attempt did still belongs to the first sync
                self.first.add(self._record(mode, "CANCELLED", start, t0, waits0, tally, split, rows, UploadResult()))
            raise
        except (SyncFailed, StorageFull) as exc:
            error = exc.code if isinstance(exc, SyncFailed) else "STORAGE_FULL"
            if error == "STORAGE_FULL":
                self._event("storage_full", str(exc))
                if mode == "FIRST_SYNC":
                    self.gave_up = error
        record = self._record(mode, error, start, t0, waits0, tally, split, rows, up)
        if mode == "FIRST_SYNC":
            self.first.add(record)
            if error is None and not self.first.reported:
                self.events.first_sync_done.fire(record=self.first.result(
                    record.ended_at, True, self.api.first_sent_at, after_end=self.past_end))
        self.events.sync_finished.fire(record=record)
        return record

    def _record(self, mode: SyncMode, error: str | None, start: float, t0: float, waits0: dict[str, float],
                tally: Tally, split: PhaseSplit, rows: dict[str, int], up: UploadResult) -> SyncRecord:
        return SyncRecord(
            device=self.spec.name, user=self.spec.user, user_class=self.spec.user_class, mode=mode,
            result="failed" if error else "success", start=start, duration_s=(ended := self.timeline.now()) - t0,
            active_s=tally.active_s, phases=split.phases, processing_s=split.processing, rows_by_table=rows,
            bytes_by_table=tally.bytes_by_table,
            file_bytes=tally.file_bytes, uploaded=up.uploaded, applied=up.applied, conflicts=up.conflicts,
            rejections=up.rejections, rejection_codes=up.rejection_codes, restarts=tally.restarts,
            error_code=error, network=self._network, storage_used_bytes=self.store.used_bytes,
            storage_capacity_bytes=self.store.capacity_bytes, waits_s=self.timeline.waits_since(waits0),
            refetched_bytes=tally.refetched_bytes, final=self.final, ended_at=ended)

    async def _phase(self, split: PhaseSplit, name: str, work: Awaitable[T]) -> T:
        """Await one phase's work, adding its lived duration to the split's phases[name], and the
        device processing inside it to processing[name]."""
        t, p = self.timeline.now(), split.tally.processing_s
        try:
            return await work
        finally:
            split.phases[name] = split.phases.get(name, 0.0) + self.timeline.now() - t
            if (spent := split.tally.processing_s - p) > 0:
                split.processing[name] = split.processing.get(name, 0.0) + spent

    # --- edits ----------------------------------------------------------------------------------
    def edit(self) -> Op | None:
        """Make one offline edit (update, create or delete) on a row the device holds."""
        tables = [t for t in (self.cls.behaviour.edit_tables or [p.table for p in self.cls.profile])
                  if t in self.engine.state.tables and self.engine.state.tables[t].editable]
        if not tables:
            return None
        table = tables[int(self.rng_edit.integers(len(tables)))]
        info = self.engine.state.tables[table]
        mix = self.cls.behaviour.edit_mix
        weights = np.array([mix.update, mix.create, mix.delete], dtype=float)
        kinds: tuple[OpKind, OpKind, OpKind] = ("update", "create", "delete")
        kind = kinds[int(self.rng_edit.choice(3, p=weights / weights.sum()))]
        held = self.store.ids(table)
        if kind != "create" and not held:
            kind = "create"
        self._edits += 1
        op_id = f"{self.spec.name}-{self._edits}"
        if kind == "create":
            row_id = new_guid(self.rng_edit)
            op = Op(op_id, "create", table, info.entity_set, row_id, None,
                    {info.id_column: row_id, **self._parents(info), **self._change(info)})
            self.store.put(table, row_id, 0, 512)
        else:
            row_id = next(islice(iter(held), int(self.rng_edit.integers(len(held))), None))
            base = self.store.version(table, row_id) or None
            op = Op(op_id, kind, table, info.entity_set, row_id, base, self._change(info) if kind == "update" else None)
            if kind == "delete":
                self.store.remove(table, row_id)
        self.events.edit_made.fire(device=self.spec.name, op=op)
        added = self.outbox.add(op)
        if added.merged_into is not None:
            self.events.edit_merged.fire(device=self.spec.name, op=op, into=added.merged_into)
        for cancelled in added.cancelled:
            self.events.edit_settled.fire(device=self.spec.name, op=cancelled, base=cancelled.base_version, outcome=None)
        return op

    def _answered(self, op: Op, outcome: Outcome) -> None:
        self.events.edit_settled.fire(device=self.spec.name, op=op, base=op.base_version, outcome=outcome)

    def _parents(self, info: TableInfo) -> dict[str, object]:
        """Bind each lookup of a new row to a row the device holds (a note on one of my work orders)."""
        out: dict[str, object] = {}
        for column, target in info.lookups:
            parent = self.engine.state.tables.get(target)
            held = [i for i, p in self.store.ids(target).items() if p >> 24] if parent else []
            if parent is not None and held:
                out[f"{column}@odata.bind"] = f"/{parent.entity_set}({held[int(self.rng_edit.integers(len(held)))]})"
        return out

    def _change(self, info: TableInfo) -> dict[str, object]:
        name, kind, extra = info.editable[int(self.rng_edit.integers(len(info.editable)))]
        r = self.rng_edit
        if kind == "choice" and extra:
            return {name: int(extra[int(r.integers(len(extra)))])}
        if kind == "integer":
            lo, hi = extra or (0, 999)
            return {name: int(r.integers(int(lo), int(hi) + 1))}
        if kind == "decimal":
            lo, hi = extra or (0, 1000)
            return {name: min(max(round(float(r.uniform(lo, hi)), 2), lo), hi)}
        return {name: f"edited on {self.spec.name} #{self._edits}"[: int(extra or 100)]}

    async def _offline_until_online(self, stop_at: float) -> None:
        """No network: the user keeps working (edits after the first sync) until it comes back."""
        if not self.engine.state.first_sync_done:
            await self.timeline.wait(self.link.wait_online(), "offline")
            return
        while not self.link.online and self.clock.now() < stop_at:
            await self._idle_until(stop_at)

    async def _idle_until(self, t: float) -> None:
        """Wait until scenario time t, making the edits the schedule says are due on the way;
        return early on reconnect."""
        while (now := self.clock.now()) < t:
            woken = await self._sleep_or_wake(min(t, self.edits.next_at(now)) - now)
            for _ in range(self.edits.take_due(min(self.clock.now(), t))):
                if self.engine.state.first_sync_done:
                    self.edit()
            if woken:
                return

    async def _sleep_or_wake(self, seconds: float) -> bool:
        """Sleep idle time; True if woken by the network coming back."""
        if not self._has_airplane():
            await self.timeline.sleep(seconds, "idle")
            return False
        self._wake = wake = asyncio.Event()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            done, _ = await self.timeline.wait(
                asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED), "idle")
        finally:
            for task in (sleeper, waiter):
                task.cancel()
            self._wake = None
        return waiter in done

    # --- airplane mode ---------------------------------------------------------------------------
    def _has_airplane(self) -> bool:
        a = self.cls.behaviour.airplane
        return bool(a.windows) or a.mean_online_s is not None

    async def _airplane(self, stop_at: float) -> None:
        """Toggle airplane mode: fixed windows (relative to scenario start) and random on/off."""
        a = self.cls.behaviour.airplane
        plan = sorted((self.origin + s, self.origin + e) for s, e in a.windows)
        while self.clock.now() < stop_at:
            now = self.clock.now()
            upcoming = [(s, e) for s, e in plan if e > now]
            if a.mean_online_s is not None and a.mean_offline_s is not None:
                off_at = now + float(self.rng_air.exponential(a.mean_online_s))
                duration = float(self.rng_air.exponential(a.mean_offline_s))
                if upcoming and upcoming[0][0] < off_at:
                    off_at, duration = upcoming[0][0], upcoming[0][1] - upcoming[0][0]
            elif upcoming:
                off_at, duration = upcoming[0][0], upcoming[0][1] - upcoming[0][0]
            else:
                return
            await self.clock.sleep(max(0.0, off_at - self.clock.now()))
            if self.clock.now() >= stop_at:
                return
            self.link.go_offline()
            self._state()
            self._event("airplane_on", f"offline for {duration:.0f}s")
            try:
                await self.clock.sleep(max(0.0, min(duration, off_at + duration - self.clock.now())))
            finally:
                self.link.go_online()
                self._state()
            self._event("airplane_off", "")
            if self._wake is not None:
                self._wake.set()

    # --- network changes -------------------------------------------------------------------------
    async def _roam(self, stop_at: float) -> None:
        """Change networks on the class's schedule (relative to the scenario's start) and at random."""
        b = self.cls.behaviour
        plan = sorted((self.origin + c.at_s, c.network) for c in b.network_changes)
        rng = self.rng_roam
        while self.clock.now() < stop_at:
            now = self.clock.now()
            upcoming = [(t, n) for t, n in plan if t > now]
            if b.roaming is not None:
                names = list(b.roaming.networks)
                weights = np.array([b.roaming.networks[n] for n in names], dtype=float)
                at = now + float(rng.exponential(b.roaming.mean_s))
                network = names[int(rng.choice(len(names), p=weights / weights.sum()))]
                if upcoming and upcoming[0][0] <= at:
                    at, network = upcoming[0]
            elif upcoming:
                at, network = upcoming[0]
            else:
                return
            await self.clock.sleep(max(0.0, at - now))
            if self.clock.now() >= stop_at:
                return
            self.change_network(network)

    def change_network(self, name: str) -> None:
        """From now on the device's requests go over network `name` (a device event says so)."""
        old = self.link.model.name
        if name == old or self.network_for is None:
            return
        self.link.model = self.network_for(name)
        self._event("network_change", f"{old} -> {name}")

    def _state(self) -> None:
        """Tell listeners the device's state changed (online, syncing)."""
        self.events.state_changed.fire(device=self.spec.name, online=self.link.online, syncing=self.syncing)

    def _event(self, kind: EventKind, detail: str) -> None:
        self.events.device_event.fire(event=DeviceEvent(self.spec.name, self.spec.user_class, kind, self.clock.now(), detail))

