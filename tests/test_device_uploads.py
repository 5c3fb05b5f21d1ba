"""Uploads whose true outcome is known by hand: a device alone never conflicts with itself, a lost
answer is applied once, refused rows are re-read even across a cut."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from simulator.scenario import EditMix, Scenario
from simulator.server.mutations import Writer
from simulator.server.state import STATE
from tests.conftest import SMALL, small_scenario
from tests.rig import Rig


def _one_writer(mode: str, detect: bool, kind: str = "update") -> Scenario:
    """One technician owning 5 work orders, nobody else writing; conflict detection on or off."""
    tables = [dict(t) for t in SMALL["tables"]]
    tables[1] = {**tables[1], "rows": 5}
    mix = {"update": 0, "create": 0, "delete": 0, kind: 1}
    cls = {**SMALL["user_classes"][0], "count": 1,
           "behaviour": {"edit_tables": ["msdyn_workorder"], "upload_mode": mode, "edit_mix": mix}}
    return small_scenario(tables=tables, user_classes=[cls], server={"conflict_detection": detect})


@pytest.mark.parametrize("mode", ["one_by_one", "batch"])
@pytest.mark.parametrize("detect", [True, False])
async def test_a_device_editing_the_same_rows_again_and_again_never_conflicts_with_itself(
        rig_factory: Any, mode: str, detect: bool) -> None:
    rig: Rig = await rig_factory(_one_writer(mode, detect))
    device = rig.device("technician-0001")
    await device.sync_once()
    assert len(device.outbox) == 0 and len(device.store.ids("msdyn_workorder")) == 5
    conflicts = 0
    for _ in range(4):  # several syncs, each with 10 edits on 5 rows: every row edited twice or more
        for _ in range(10):
            device.edit()
        assert len(device.outbox) <= 5  # a row's waiting edits go up as one
        record = await device.sync_once()
        assert record.result == "success", record
        conflicts += record.conflicts
        assert record.applied == record.uploaded and record.rejections == 0
    assert len(rig.journal.intents) == 40 and conflicts == 0
    assert rig.state.counters.conflicts.total() == 0
    assert rig.check(device).ok and (await rig.ledger(device))["passed"]


@pytest.mark.parametrize("detect", [True, False])
async def test_an_edit_of_a_row_whose_upload_is_unanswered_builds_on_that_upload(rig_factory: Any, detect: bool) -> None:
    lost = {"left": 1}

    @web.middleware
    async def lose_first_answer(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "PATCH" and lost["left"]:
            lost["left"] -= 1
            return web.Response(status=503)  # applied, but the device hears a failure
        return response

    rig: Rig = await rig_factory(_one_writer("one_by_one", detect), middlewares=[lose_first_answer])
    device = rig.device("technician-0001")
    device.api.max_retries = 0
    await device.sync_once()
    first = device.edit()
    assert first is not None and (await device.sync_once()).result == "failed"
    again = device.edit()
    while again is not None and again.row_id != first.row_id:  # the same row again, its upload unanswered
        again = device.edit()
    assert again is not None and again in device.outbox.pending()  # not merged into the op in flight
    records = [await device.sync_once(), await device.sync_once()]
    assert all(r.result == "success" for r in records) and sum(r.conflicts for r in records) == 0
    assert rig.check(device).ok and (await rig.ledger(device))["passed"]


async def test_a_batch_resent_after_a_lost_answer_is_the_same_batch_even_with_new_edits(rig_factory: Any) -> None:
    keys: list[str] = []

    @web.middleware
    async def lose_first_answer(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("$batch"):
            keys.append(request.headers.get("x-syncsim-idempotency-key", ""))
            if len(keys) == 1:
                await handler(request)  # applied on the server...
                return web.Response(status=503)  # ...but the device hears a failure
        return await handler(request)

    rig: Rig = await rig_factory(_one_writer("batch", False), middlewares=[lose_first_answer])
    device = rig.device("technician-0001")
    device.api.max_retries = 0  # the sync fails at once; the edits stay in the outbox
    await device.sync_once()
    device.edit(), device.edit()
    failed = await device.sync_once()
    assert failed.result == "failed" and len(device.outbox) == 2
    device.edit()  # a new edit arrives before the next sync
    applied_before = rig.state.counters.writes_applied
    record = await device.sync_once()
    assert record.result == "success", record
    assert keys[1] == keys[0]  # the first group again, with its key: replayed, not applied twice
    assert rig.state.counters.writes_applied - applied_before == 1  # only the new edit
    assert record.conflicts == 0 and len(device.outbox) == 0
    assert rig.check(device).ok


async def test_a_row_refused_before_a_cut_is_still_re_read_by_the_next_sync(rig_factory: Any) -> None:
    from simulator.server.privileges import change_privilege

    failing = {"on": False}

    @web.middleware
    async def fail_refresh(request: web.Request, handler: Any) -> web.StreamResponse:
        if failing["on"] and request.method == "GET" and "(" in request.path:
            return web.Response(status=503)
        return await handler(request)

    rig: Rig = await rig_factory(_one_writer("one_by_one", False, "delete"), middlewares=[fail_refresh])
    device = rig.device("technician-0001")
    device.api.max_retries = 0
    await device.sync_once()
    op = device.edit()
    assert op is not None and op.kind == "delete"
    change_privilege(rig.state, rig.state.store.users_by_name["technician-0001"], "msdyn_workorder", {"delete": "none"})
    failing["on"] = True
    cut = await device.sync_once()
    assert cut.result == "failed" and cut.rejections == 1 and len(device.outbox) == 0
    failing["on"] = False
    record = await device.sync_once()
    assert record.result == "success"
    assert device.store.version("msdyn_workorder", op.row_id) == rig.state.store.table("msdyn_workorder").rows[op.row_id].version
    assert rig.check(device).ok


async def test_a_row_the_device_created_and_the_server_then_deleted_does_not_stay_on_the_device(
        rig_factory: Any) -> None:
    created: list[str] = []

    @web.middleware
    async def delete_right_after_upload(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and request.path.endswith("/msdyn_workorders") and response.status < 300:
            state = request.app[STATE]
            row_id = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
            created.append(row_id)
            state.store.delete(state.store.table("msdyn_workorder"), row_id)  # before the device's delta
        return response

    rig: Rig = await rig_factory(_one_writer("one_by_one", False, "create"), middlewares=[delete_right_after_upload])
    device = rig.device("technician-0001")
    await device.sync_once()
    op = device.edit()
    assert op is not None and op.kind == "create"
    record = await device.sync_once()
    assert record.applied == 1 and created == [op.row_id]
    assert device.store.version("msdyn_workorder", op.row_id) is None  # the delta's tombstone removed it
    assert rig.check(device).ok


async def test_a_note_created_offline_on_a_work_order_deleted_meanwhile_is_refused_and_leaves_the_device(
        rig_factory: Any) -> None:
    cls = {**SMALL["user_classes"][0], "count": 1,
           "privileges": {t: {"read": "org", "write": "org"} for t in ("msdyn_workorder", "annotation")},
           "behaviour": {"edit_tables": ["annotation"], "edit_mix": {"update": 0, "create": 1, "delete": 0}}}
    rig: Rig = await rig_factory(small_scenario(user_classes=[cls]))
    device = rig.device("technician-0001")
    await device.sync_once()
    op = device.edit()
    assert op is not None and op.payload is not None
    parent = op.payload["objectid@odata.bind"].split("(")[1].rstrip(")")
    rig.state.store.delete(rig.state.store.table("msdyn_workorder"), parent)  # the back office deletes it
    record = await device.sync_once()
    assert (record.uploaded, record.rejections, record.rejection_codes) == (1, 1, {"ObjectDoesNotExist": 1})
    assert device.store.version("annotation", op.row_id) is None and op.row_id not in rig.state.store.table("annotation").rows
    assert rig.check(device).ok


@pytest.mark.parametrize("mode", ["one_by_one", "batch"])
async def test_a_note_created_offline_on_a_work_order_the_device_then_deletes_leaves_the_device(
        rig_factory: Any, mode: str) -> None:
    """Found by the chaos run: create a note on my work order, delete the work order, sync. Both
    uploads apply; the note is now outside the view (its parent is gone) and was created after the
    device's token, so the delta must still send its removal."""
    cls = {**SMALL["user_classes"][0], "count": 1,
           "privileges": {t: {"read": "org", "write": "org", "delete": "user"} for t in ("msdyn_workorder", "annotation")},
           "behaviour": {"edit_tables": ["annotation"], "upload_mode": mode,
                         "edit_mix": {"update": 0, "create": 1, "delete": 0}}}
    rig: Rig = await rig_factory(small_scenario(user_classes=[cls]))
    device = rig.device("technician-0001")
    await device.sync_once()
    note = device.edit()
    assert note is not None and note.payload is not None
    parent = note.payload["objectid@odata.bind"].split("(")[1].rstrip(")")
    deleting = device.cls.behaviour.model_copy(update={
        "edit_tables": ["msdyn_workorder"], "edit_mix": EditMix(update=0, create=0, delete=1)})
    device.cls = device.cls.model_copy(update={"behaviour": deleting})
    while (op := device.edit()) is not None and op.row_id != parent:  # delete other work orders until the parent goes
        pass
    assert op is not None and op.kind == "delete"
    record = await device.sync_once()
    assert record.result == "success" and record.rejections == 0
    notes = rig.state.store.table("annotation")
    assert note.row_id in notes.rows  # the server keeps the orphaned note (no cascade)
    assert device.store.version("annotation", note.row_id) is None  # but it left the device's view
    assert rig.check(device).ok and (await rig.ledger(device))["passed"]


@pytest.mark.parametrize("detect", [True, False])
async def test_an_edit_of_a_row_another_writer_changed_is_one_conflict_under_either_policy(
        rig_factory: Any, detect: bool) -> None:
    """Known answer: one device edits one row that the back office changed since; exactly one
    conflict. Server wins (the table's metadata says detection on): If-Match, 412, the server copy
    stays. Last writer wins: If-Match * with the base version, applied, flagged."""
    seen: list[dict[str, str]] = []

    @web.middleware
    async def watch(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "PATCH":
            seen.append({k: v for k, v in request.headers.items() if k in ("If-Match", "x-syncsim-base-version")})
        return await handler(request)

    rig: Rig = await rig_factory(_one_writer("one_by_one", detect), middlewares=[watch])
    device = rig.device("technician-0001")
    await device.sync_once()
    assert device.engine.state.tables["msdyn_workorder"].conflict_detection is detect  # from the metadata
    op = device.edit()
    assert op is not None and op.kind == "update" and op.base_version
    office = Writer(rig.state, rig.state.store.users_by_name["backoffice"])  # the back office writes the row meanwhile
    office.update(rig.state.store.table("msdyn_workorder"), op.row_id, {"msdyn_priority": 3})
    record = await device.sync_once()
    assert (record.uploaded, record.conflicts, record.rejections) == (1, 1, 0)
    assert record.applied == (0 if detect else 1)
    base = str(op.base_version)
    assert seen == ([{"If-Match": f'W/"{base}"'}] if detect else [{"If-Match": "*", "x-syncsim-base-version": base}])
    assert rig.state.counters.conflicts["msdyn_workorder/technician-0001"] == 1
    assert rig.check(device).ok and (await rig.ledger(device))["passed"]

