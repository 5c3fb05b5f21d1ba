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
