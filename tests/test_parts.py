"""A run's devices handed in over Locust's messages (msgpack) come back exactly, and parts merge
into one run whose totals are the sums."""

from __future__ import annotations

import msgpack

from simulator.device.store import pack
from simulator.ledger import DeviceEnd, Journal
from simulator.ledger.journal import Intent
from simulator.metrics import DeviceEvent, FirstSync, SyncRecord, TimelineSample
from simulator.parts import DevicePart, merge


def _sample(t: float, online: int, lag: float) -> TimelineSample:
    return TimelineSample(t, online, 1, 0, 3, 100.0, 2000.0, 0, lag, 0.5, 90.0, 4.0, 0.1, 80.0)


def _part(device: str, online: int, lag: float) -> DevicePart:
    record = SyncRecord(device=device, user=device[4:], user_class="technician", mode="DELTA_SYNC",
                        result="success", start=10.0, duration_s=1.25, active_s=1.0, phases={"data": 1.0},
                        rejection_codes={"0x80040220": 1}, waits_s={"backoff": 2.0})
    first = FirstSync(device, device[4:], "technician", "3g", 1.0, 53.0, True, 2, {"data": 45.0}, {}, 600, 600_000)
    journal = Journal(intents={f"{device}-1": Intent(device, f"{device}-1", "update", "account", "r1", 123,
                                                     settled=True, status=204, version=1200, base=1100)},
                      first_sync_spans={device: 53.0}, over_quota=[],
                      held_after_sync={device: [{"account": (1200, frozenset({"r1", "r2"}))}]})
    end = DeviceEnd(device, device[4:], [], {"account": {"r1": pack(1200, 900, 0xDEADBEEF), "r2": pack(7, 1, 0)}},
                    {"annotation/x/documentbody": (6144, 77)})  # a row's contents digest takes it past 64 bits
    journal.throttled, journal.device_classes = 2, {device: "technician"}
    journal.record_ops = [(device, 10.0, 1, [f"{device}-1"])]
    return DevicePart([record], [first], [DeviceEvent(device, "technician", "airplane_on", 12.0, "offline for 60s")],
                      journal, [end], {}, [_sample(0.0, online, lag), _sample(1.0, online, lag)], [lag, 1.0],
                      {"storm requests": 4})


def test_a_part_survives_locusts_messages_unchanged() -> None:
    part = _part("dev-technician-0001", 2, 3.0)
    wire = msgpack.unpackb(msgpack.packb(part.to_wire()), raw=False, strict_map_key=False)
    back = DevicePart.from_wire(wire)
    assert back.records == part.records and back.first_syncs == part.first_syncs and back.events == part.events
    assert back.ends == part.ends and back.timeline == part.timeline and back.storms == part.storms
    assert back.journal.intents == part.journal.intents
    assert back.journal.held_after_sync == part.journal.held_after_sync
    assert back.journal.first_sync_spans == part.journal.first_sync_spans
    assert (back.journal.throttled, back.journal.device_classes, back.journal.record_ops) == (
        part.journal.throttled, part.journal.device_classes, part.journal.record_ops)


def test_merged_parts_hold_every_record_and_add_up_the_fleet_second_by_second() -> None:
    merged = merge([_part("dev-technician-0001", 2, 3.0), _part("dev-technician-0002", 5, 40.0)])
    assert [r.device for r in merged.records] == ["dev-technician-0001", "dev-technician-0002"]
    assert set(merged.journal.intents) == {"dev-technician-0001-1", "dev-technician-0002-1"}
    assert set(merged.journal.first_syncs) == {"dev-technician-0001", "dev-technician-0002"}
    assert merged.journal.records is merged.records
    assert [s.devices_online for s in merged.timeline] == [7, 7]
    assert [s.gen_loop_lag_ms for s in merged.timeline] == [40.0, 40.0]  # the worst process, not an average
    assert merged.timeline[0].rows_per_s == 100.0  # the one server's figure, not a sum
    assert sorted(merged.lags_ms) == [1.0, 1.0, 3.0, 40.0] and merged.storms == {"storm requests": 8}
