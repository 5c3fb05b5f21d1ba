"""The runner's quiet period: which devices the end-of-run check leaves out, and why."""

from __future__ import annotations

from typing import Any

from simulator.runner import _quiet_period
from tests.rig import Rig


async def test_a_device_whose_storage_fills_up_after_first_sync_is_left_out_as_full_not_unfinished(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory()
    device = rig.device("technician-0001")
    await device.sync_once()
    device.store.capacity_bytes = device.store.used_bytes  # the phone is full
    for row_id in list(rig.state.store.table("account").rows)[:3]:
        rig.back_office_update("account", row_id, {"description": "x" * 3000})  # rows grow
    skipped = await _quiet_period([device], rig.clock, 600)
    assert skipped == {device.spec.name: "STORAGE_FULL: its storage cannot hold its view (edits kept in the outbox)"}


async def test_a_device_that_syncs_in_the_quiet_period_is_checked(rig_factory: Any) -> None:
    rig: Rig = await rig_factory()
    device = rig.device("technician-0001")
    await device.sync_once()
    assert await _quiet_period([device], rig.clock, 600) == {}


def test_a_real_time_run_warns_about_classes_whose_transfers_take_much_of_the_time_between_their_syncs() -> None:
    """At time_scale 60 a 900 s interval is 15 real seconds: a class whose syncs work 5 real seconds
    (p95) lets the world run 60 times faster than its devices for a third of it; 1 s is fine."""
    from simulator.metrics import SyncRecord
    from simulator.runner import world_ahead
    from tests.conftest import small_scenario

    def record(cls: str, active_s: float, processing_s: float = 0.0, final: bool = False) -> SyncRecord:
        return SyncRecord(device=f"dev-{cls}", user=cls, user_class=cls, mode="DELTA_SYNC", result="success",
                          start=0.0, duration_s=active_s, active_s=active_s, final=final,
                          processing_s={"data": processing_s} if processing_s else {})

    from simulator.clock import ManualClock, RealClock

    scenario = small_scenario()
    cls = scenario.user_classes[0]
    interval = cls.behaviour.sync_interval_s
    slow = [record(cls.name, 4.0, processing_s=1.0)] * 20 + [record(cls.name, 60.0, final=True)]
    (warned,) = world_ahead(scenario, slow, RealClock(60))
    assert warned == {"user_class": cls.name, "share": round(5.0 / (interval / 60), 3), "work_p95_s": 5.0,
                      "between_syncs_real_s": round(interval / 60, 2)}
    assert world_ahead(scenario, [record(cls.name, 0.1 * interval / 60)] * 20, RealClock(60)) == []
    assert world_ahead(scenario, slow, RealClock(1)) == []
    assert world_ahead(scenario, slow, ManualClock(time_scale=60)) == []  # only real time mixes two clocks


def test_the_fleet_gauge_counts_devices_offline_and_syncing_from_their_state_changes() -> None:
    from simulator.events import Events
    from simulator.runner import FleetGauge

    events = Events()
    gauge = FleetGauge(events)
    gauge.devices = 3
    events.state_changed.fire(device="a", online=True, syncing=True)
    events.state_changed.fire(device="b", online=False, syncing=False)
    events.state_changed.fire(device="b", online=False, syncing=False)  # told twice: counted once
    state = gauge.state(syncs_done=7)
    assert (state.online, state.offline, state.syncing, state.syncs_done) == (2, 1, 1, 7)
    events.state_changed.fire(device="a", online=True, syncing=False)
    events.state_changed.fire(device="b", online=True, syncing=False)
    assert (gauge.state(0).online, gauge.state(0).syncing) == (3, 0)
