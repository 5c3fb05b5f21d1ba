"""The device engine against the real mock server on loopback, on the manual clock."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from simulator.server.state import ServerState
from tests.conftest import small_scenario


async def test_first_sync_downloads_exactly_the_users_offline_profile(rig_factory: Any) -> None:
    rig = await rig_factory()
    device = rig.device("technician-0001", page_size=7)
    record = await device.sync_once()
    assert record.mode == "FIRST_SYNC" and record.result == "success", record
    assert set(record.phases) == {"metadata", "data", "files"}
    assert rig.check(device).ok
    assert record.file_bytes == device.store.used_bytes - sum(
        p & 0xFFFFFF for rows in device.store.tables.values() for p in rows.values())


async def test_edits_upload_and_delta_brings_server_changes(rig_factory: Any) -> None:
    rig = await rig_factory()
    device = rig.device("technician-0001")
    await device.sync_once()
    ops = [device.edit() for _ in range(6)]
    assert all(ops) and len(device.outbox) > 0
    record = await device.sync_once()
    assert record.mode == "DELTA_SYNC" and record.result == "success", record
    assert record.uploaded == record.applied > 0 and record.rejections == 0
    assert len(device.outbox) == 0
    assert rig.check(device).ok


async def test_storage_full_fails_first_sync_with_a_clear_cause(rig_factory: Any) -> None:
    rig = await rig_factory()
    device = rig.device("manager-0001", storage_bytes=10_000)
    record = await device.sync_once()
    assert record.result == "failed" and record.error_code == "STORAGE_FULL"
    assert device.gave_up == "STORAGE_FULL"
    assert any(e.kind == "storage_full" for e in rig.metrics.events)


async def test_storage_full_during_delta_keeps_edits_delivered(rig_factory: Any) -> None:
    rig = await rig_factory()
    device = rig.device("technician-0001")
    await device.sync_once()
    op = device.edit()
    assert op is not None
    device.store.capacity_bytes = device.store.used_bytes  # no room left for anything new
    table = rig.state.store.table("account")
    for row_id in list(table.rows)[:5]:  # the back office changes rows the device holds
        rig.state.store.write(table, _bumped(rig.state, table, row_id, big=True))
    record = await device.sync_once()
    assert record.error_code == "STORAGE_FULL" and record.applied == 1
    assert len(device.outbox) == 0


async def test_expired_token_uploads_edits_then_forces_a_full_resync(rig_factory: Any) -> None:
    rig = await rig_factory()
    device = rig.device("technician-0002")
    await device.sync_once()
    device.edit()
    table = rig.state.store.table("account")
    gone = next(iter(table.rows))
    rig.state.store.delete(table, gone)
    rig.clock.advance(8 * 86400)
    record = await device.sync_once()
    assert record.mode == "FORCED_SYNC" and record.result == "success", record
    assert record.applied == 1
    assert device.store.version("account", gone) is None
    assert rig.check(device).ok
    assert any(e.kind == "token_expired" for e in rig.metrics.events)


async def test_throttled_device_waits_retry_after_and_finishes(rig_factory: Any) -> None:
    scenario = small_scenario(server={"limits": {"requests": 3, "window_s": 60}})
    rig = await rig_factory(scenario)
    device = rig.device("technician-0001", page_size=5)
    start = rig.clock.now()
    record = await device.sync_once()
    assert record.result == "success", record
    assert any(e.kind == "throttled" for e in rig.metrics.events)
    assert rig.clock.now() - start >= 60  # waited out the window
    assert rig.check(device).ok


async def test_lost_upload_response_is_retried_without_applying_twice(rig_factory: Any) -> None:
    dropped: list[str] = []

    @web.middleware
    async def lose_first_batch_answer(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.path.endswith("$batch") and not dropped:
            dropped.append(request.headers.get("x-syncsim-idempotency-key", ""))
            assert request.transport is not None
            request.transport.close()  # the server applied it; the device never hears back
        return response

    rig = await rig_factory(middlewares=[lose_first_batch_answer])
    device = rig.device("technician-0001")
    await device.sync_once()
    for _ in range(4):
        device.edit()
    applied_before = rig.state.counters.writes_applied
    record = await device.sync_once()
    assert dropped, "the first batch answer was not dropped"
    assert record.result == "success" and record.applied == record.uploaded
    assert rig.state.counters.writes_applied - applied_before == record.uploaded
    assert rig.check(device).ok


async def test_first_sync_cut_by_airplane_mode_resumes_where_it_stopped(rig_factory: Any) -> None:
    rig = await rig_factory()
    device = rig.device("manager-0001", page_size=5)
    pages: list[str] = []
    loop = asyncio.get_running_loop()

    def cut(**kw: Any) -> None:
        if not kw["status"]:
            return  # the request airplane mode cut: it is sent again
        pages.append(kw["name"])
        if len(pages) == 8:
            device.link.go_offline()
            loop.call_later(0.01, device.link.go_online)

    rig.events.request.add_listener(cut)
    record = await device.sync_once()
    assert record.result == "success" and record.restarts == 1, record
    reads = sum(1 for p in pages if not p.startswith("EntityDefinitions") and "(" not in p)  # data pages only
    expected = sum(-(-len(ids) // 5) or 1 for ids in rig.state.access.snapshot(
        rig.state.store.users_by_name["manager-0001"]).values())
    assert reads == expected  # no page fetched twice
    assert rig.check(device).ok


def _bumped(state: ServerState, table: Any, row_id: str, big: bool = False) -> Any:
    from simulator.server.store import Row

    old = table.rows[row_id]
    values = {**old.values, "description": "x" * 5000} if big else dict(old.values)
    return Row(row_id, state.store.next_version(), old.owner, old.team, state.clock.now(), values, old.files)


async def test_edits_after_losing_write_privilege_are_rejected_and_rows_restored(rig_factory: Any) -> None:
    from simulator.server.privileges import change_privilege

    rig = await rig_factory()
    device = rig.device("technician-0001")
    await device.sync_once()
    held_before = dict(device.store.ids("msdyn_workorder"))
    for _ in range(12):
        device.edit()
    queued = len(device.outbox)  # edits of one row waiting together go up as one
    user = rig.state.store.users_by_name["technician-0001"]
    change_privilege(rig.state, user, "msdyn_workorder", {"write": "none", "delete": "none"})
    record = await device.sync_once()
    assert record.rejections == queued > 0  # creates need write privilege too
    assert record.rejection_codes == {"PrivilegeDenied": record.rejections}
    assert set(held_before) <= set(device.store.ids("msdyn_workorder"))  # deleted rows came back
    assert rig.check(device).ok


async def test_devices_only_edit_columns_the_server_accepts(rig_factory: Any) -> None:
    rig = await rig_factory(small_scenario(user_classes=[{
        "name": "technician", "count": 1, "privileges": {t: {"read": "org", "write": "org", "delete": "org"}
                                                         for t in ("account", "msdyn_workorder", "annotation")},
        "behaviour": {"edit_mix": {"update": 1, "create": 1, "delete": 0}},
        "profile": [{"table": "account"}, {"table": "msdyn_workorder"}, {"table": "annotation"}]}]))
    device = rig.device("technician-0001")
    await device.sync_once()
    for _ in range(60):
        device.edit()
    queued = len(device.outbox)
    record = await device.sync_once()
    assert record.uploaded == queued > 40 and record.rejections == 0, record.rejection_codes
    assert rig.check(device).ok


async def test_an_unreadable_batch_answer_fails_the_sync_and_keeps_the_edits(rig_factory: Any) -> None:
    garbled: list[bool] = []

    @web.middleware
    async def garble_first_batch(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.path.endswith("$batch") and not garbled:
            garbled.append(True)
            return web.Response(status=200, body=b"not multipart", content_type="text/plain")
        return response

    rig = await rig_factory(middlewares=[garble_first_batch])
    device = rig.device("technician-0001")
    await device.sync_once()
    for _ in range(3):
        device.edit()
    pending = len(device.outbox)
    record = await device.sync_once()
    assert record.result == "failed" and record.error_code == "BATCH"
    assert len(device.outbox) == pending
    assert (await device.sync_once()).result == "success"  # the next sync delivers them (same key)
    assert len(device.outbox) == 0 and rig.check(device).ok


async def test_a_forced_resync_cut_part_way_is_finished_by_the_next_sync(rig_factory: Any) -> None:
    failing = {"armed": False, "seen": 0}

    @web.middleware
    async def fail_during_resync(request: web.Request, handler: Any) -> web.StreamResponse:
        if failing["armed"] and request.path.endswith("/accounts") and "track-changes" in request.headers.get("Prefer", ""):
            failing["seen"] += 1
            if 2 <= failing["seen"] <= 9:  # the second page onwards fails past every retry
                return web.Response(status=503)
        return await handler(request)

    rig = await rig_factory(middlewares=[fail_during_resync])
    device = rig.device("technician-0002", page_size=5)
    await device.sync_once()
    table = rig.state.store.table("account")
    gone = sorted(table.rows)[-1]  # on the last page, so only a complete resync can drop it
    rig.state.store.delete(table, gone)
    rig.clock.advance(8 * 86400)
    failing["armed"] = True
    cut = await device.sync_once()
    assert cut.mode == "FORCED_SYNC" and cut.result == "failed" and cut.error_code == "HTTP_503"
    record = await device.sync_once()
    assert record.mode == "FORCED_SYNC" and record.result == "success", record
    assert device.store.version("account", gone) is None
    assert rig.check(device).ok
    assert (await device.sync_once()).mode == "DELTA_SYNC"
