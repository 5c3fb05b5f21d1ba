"""A device's first sync over all its attempts: what its user lives through from the first request
to the attempt that completes it (or to the end of the run)."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.metrics import FirstSync, SyncRecord


@dataclass(slots=True)
class FirstSyncTracker:
    """Adds up the attempts of one device's first sync. Times are lived seconds (`Timeline.now()`)."""

    device: str
    user: str
    user_class: str
    network: str
    started_at: float | None = None  # lived time the first attempt started
    start: float = 0.0  # scenario time the first attempt started
    attempts: list[SyncRecord] = field(default_factory=list)
    reported: bool = False

    def begin(self, scenario_now: float, lived_now: float) -> None:
        """An attempt starts; the first one starts the clock."""
        if self.started_at is None:
            self.started_at, self.start = lived_now, scenario_now

    def add(self, attempt: SyncRecord) -> None:
        """An attempt ended (completed, failed, or cut by the end of the run)."""
        self.attempts.append(attempt)

    def result(self, lived_now: float, finished: bool, first_request_at: float | None,
               after_end: bool = False) -> FirstSync:
        """The first sync so far, as a record: from the first request of its first attempt (or the
        attempt's start, if no request went out) to `lived_now`. Marks it reported. `after_end`: it
        completed after the scenario's end (in the quiet period)."""
        self.reported = True
        start = first_request_at if first_request_at is not None else self.started_at
        duration = 0.0 if start is None else lived_now - start
        phases: dict[str, float] = {}
        processing: dict[str, float] = {}
        waits: dict[str, float] = {}
        for a in self.attempts:
            for name, seconds in a.phases.items():
                phases[name] = phases.get(name, 0.0) + seconds
            for name, seconds in a.processing_s.items():
                processing[name] = processing.get(name, 0.0) + seconds
            for kind, seconds in a.waits_s.items():
                waits[kind] = waits.get(kind, 0.0) + seconds
        if len(self.attempts) > 1:  # the device's idle or offline time between its attempts
            waits["between_attempts"] = max(0.0, duration - sum(a.duration_s for a in self.attempts))
        failed = [a for a in self.attempts if a.result == "failed"]
        return FirstSync(
            device=self.device, user=self.user, user_class=self.user_class, network=self.network,
            start=self.start, duration_s=duration, finished=finished, attempts=len(self.attempts),
            phases=phases, waits_s=waits, rows=sum(a.rows for a in self.attempts),
            bytes=sum(a.bytes for a in self.attempts), file_bytes=sum(a.file_bytes for a in self.attempts),
            refetched_bytes=sum(a.refetched_bytes for a in self.attempts),
            error_code=failed[-1].error_code if failed else None, processing_s=processing, after_end=after_end)
