"""What a set of devices hands in at the end of a run, so that a run split over processes (Locust's
workers) is checked and reported as one: every sync record, first sync and device event, the
ledger's journal, how each device ended, which were left out of the check and why, the timeline
and the process's own loop-lag measurements.

`to_wire()` gives plain dicts and lists (what Locust's messages carry: msgpack has no tuples or
sets); `from_wire()` reads them back; `merge()` joins the parts of several processes into one, whose
figures are computed over every record (never averages of per-process figures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.device.store import pack, unpack
from simulator.ledger import DeviceEnd, Journal
from simulator.ledger.journal import Intent
from simulator.metrics import DeviceEvent, FirstSync, SyncRecord, TimelineSample


@dataclass(slots=True)
class DevicePart:
    records: list[SyncRecord] = field(default_factory=list)
    first_syncs: list[FirstSync] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    journal: Journal = field(default_factory=Journal)
    ends: list[DeviceEnd] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # device -> why it was left out of the check
    timeline: list[TimelineSample] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)  # the process's loop-lag measurements
    storms: dict[str, int] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        j = self.journal
        return {
            "records": [asdict(r) for r in self.records],
            "first_syncs": [asdict(f) for f in self.first_syncs],
            "events": [asdict(e) for e in self.events],
            "journal": {
                "intents": [asdict(i) for i in j.intents.values()],
                "settled_twice": list(j.settled_twice),
                "first_sync_spans": dict(j.first_sync_spans),
                "over_quota": list(j.over_quota),
                "throttled": j.throttled,
                "record_ops": [list(r) for r in j.record_ops],
                "device_classes": dict(j.device_classes),
                "held_after_sync": {d: [{t: [v, sorted(ids)] for t, (v, ids) in held.items()} for held in seen]
                                    for d, seen in j.held_after_sync.items()},
            },
            "ends": [{**asdict(e), "files": {k: list(v) for k, v in e.files.items()},
                      # a packed row passes 64 bits (its contents digest): sent as [version, size, digest]
                      "rows": {t: {i: list(unpack(p)) for i, p in rows.items()} for t, rows in e.rows.items()}}
                     for e in self.ends],
            "skipped": dict(self.skipped),
            "timeline": [asdict(s) for s in self.timeline],
            "lags_ms": list(self.lags_ms),
            "storms": dict(self.storms),
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> DevicePart:
        records = [SyncRecord(**r) for r in raw["records"]]
        firsts = [FirstSync(**f) for f in raw["first_syncs"]]
        w = raw["journal"]
        journal = Journal(
            intents={i["op"]: Intent(**i) for i in w["intents"]}, settled_twice=list(w["settled_twice"]),
            records=records, first_syncs={f.device: f for f in firsts},
            first_sync_spans={k: float(v) for k, v in w["first_sync_spans"].items()},
            over_quota=list(w["over_quota"]), throttled=int(w["throttled"]), device_classes=dict(w["device_classes"]),
            record_ops=[(str(d), float(t), int(n), list(ops)) for d, t, n, ops in w["record_ops"]],
            held_after_sync={d: [{t: (int(v), frozenset(ids)) for t, (v, ids) in held.items()} for held in seen]
                             for d, seen in w["held_after_sync"].items()})
        ends = [DeviceEnd(**{**e, "files": {k: (int(v[0]), int(v[1])) for k, v in e["files"].items()},
                             "rows": {t: {i: pack(*p) for i, p in rows.items()} for t, rows in e["rows"].items()}})
                for e in raw["ends"]]
        return cls(records, firsts, [DeviceEvent(**e) for e in raw["events"]], journal, ends, dict(raw["skipped"]),
                   [TimelineSample(**s) for s in raw["timeline"]], [float(x) for x in raw["lags_ms"]],
                   {k: int(v) for k, v in raw["storms"].items()})


def merge(parts: list[DevicePart]) -> DevicePart:
    """One part holding every part's devices; timelines are joined second by second (fleet counts
    and rates added, the worst generator health kept; the server's own figures are the same server)."""
    out = DevicePart()
    for p in parts:
        out.records += p.records
        out.first_syncs += p.first_syncs
        out.events += p.events
        out.ends += p.ends
        out.skipped.update(p.skipped)
        out.lags_ms += p.lags_ms
        for k, n in p.storms.items():
            out.storms[k] = out.storms.get(k, 0) + n
        j, o = p.journal, out.journal
        o.intents.update(j.intents)
        o.settled_twice += j.settled_twice
        o.first_sync_spans.update(j.first_sync_spans)
        o.over_quota += j.over_quota
        o.throttled += j.throttled
        o.record_ops += j.record_ops
        o.device_classes.update(j.device_classes)
        o.held_after_sync.update(j.held_after_sync)
    out.records.sort(key=lambda r: (r.start, r.device))
    out.events.sort(key=lambda e: (e.at, e.device))
    out.journal.records = out.records
    out.journal.first_syncs = {f.device: f for f in out.first_syncs}
    out.timeline = _joined([p.timeline for p in parts])
    return out


def _joined(timelines: list[list[TimelineSample]]) -> list[TimelineSample]:
    """Second by second (the i-th sample of each), as far as the shortest timeline goes."""
    if len(timelines) == 1:
        return list(timelines[0])
    out: list[TimelineSample] = []
    for seconds in zip(*timelines, strict=False):
        first = seconds[0]
        out.append(TimelineSample(
            t=first.t, devices_online=sum(s.devices_online for s in seconds),
            devices_offline=sum(s.devices_offline for s in seconds),
            devices_syncing=sum(s.devices_syncing for s in seconds), syncs_done=sum(s.syncs_done for s in seconds),
            rows_per_s=first.rows_per_s, bytes_per_s=first.bytes_per_s, throttled=first.throttled,
            gen_loop_lag_ms=max(s.gen_loop_lag_ms for s in seconds), gen_cpu=max(s.gen_cpu for s in seconds),
            gen_peak_rss_mb=max(s.gen_peak_rss_mb for s in seconds), server_loop_lag_ms=first.server_loop_lag_ms,
            server_cpu=first.server_cpu, server_peak_rss_mb=first.server_peak_rss_mb))
    return out
