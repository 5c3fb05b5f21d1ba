"""File downloads whose true outcome is known by hand: every file held byte for byte, a file that
vanishes before its download never stalls a first sync, a cut range resumes from the bytes stored."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from simulator.network import NetworkModel
from simulator.scenario import Scenario, parse_scenario
from simulator.server.privileges import change_privilege
from simulator.server.seed import file_bytes
from simulator.server.state import STATE
from simulator.server.store import Row
from tests.rig import Rig


def _notes(rows: int = 4, kb: float = 20) -> Scenario:
    """One manager who reads every note and its file (`rows` notes, each file exactly `kb` KiB)."""
    return parse_scenario({
        "name": "files", "seed": 5,
        "tables": [{"logical_name": "annotation", "entity_set": "annotations", "rows": rows, "columns": [
            {"name": "documentbody", "type": "file", "size": {"median_kb": kb, "sigma": 0, "min_kb": kb, "max_kb": kb}}]}],
        "user_classes": [{"name": "manager", "count": 1, "profile": [{"table": "annotation"}],
                          "privileges": {"annotation": {"read": "org", "write": "org"}}}],
    })


def _expected_files(rig: Rig) -> dict[str, tuple[int, int]]:
    """What the device should hold: {key: (size, CRC-32)} of the files of the notes in its view."""
    user = rig.state.store.users_by_name["manager-0001"]
    visible = rig.state.access.snapshot(user).get("annotation", {})
    table = rig.state.store.table("annotation")
    out = {}
    for row_id in visible:
        info = (table.rows[row_id].files or {}).get("documentbody")
        if info is not None:
            out[f"annotation/{row_id}/documentbody"] = (info.size, zlib.crc32(file_bytes(info, 0, info.size)))
    return out


def _vanish_first_file(how: str) -> Any:
    """A middleware: just before the first file download, its row loses the file in the way `how` says."""
    done: list[str] = []

    @web.middleware
    async def vanish(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/$value") and not done:
            state = request.app[STATE]
            table = state.store.table("annotation")
            row_id = request.path.split("(", 1)[1].split(")", 1)[0]
            done.append(row_id)
            row = table.rows[row_id]
            if how == "row deleted":
                state.store.delete(table, row_id)
            elif how == "file removed":
                state.store.write(table, Row(row.id, state.store.next_version(), row.owner, row.team,
                                             row.modified, dict(row.values), None))
            else:
                change_privilege(state, state.store.users_by_name["manager-0001"], "annotation", {"read": "none"})
        return await handler(request)

    return vanish


@pytest.mark.parametrize("how", ["row deleted", "file removed", "read revoked"])
async def test_a_file_that_vanishes_before_its_download_does_not_stall_first_sync(rig_factory: Any, how: str) -> None:
    rig: Rig = await rig_factory(_notes(), middlewares=[_vanish_first_file(how)])
    device = rig.device("manager-0001")
    first = await device.sync_once()
    assert first.mode == "FIRST_SYNC" and first.result == "success", first
    assert (await device.sync_once()).mode == "DELTA_SYNC"  # the delta drops what is gone
    assert rig.check(device).ok
    assert device.store.file_snapshot() == _expected_files(rig)
    held = sum(size for size, _ in device.store.file_snapshot().values())
    assert device.store.used_bytes - sum(p & 0xFFFFFF for p in device.store.ids("annotation").values()) == held
    assert rig.metrics.first_syncs[0].finished


async def test_airplane_mode_during_a_file_range_resumes_from_the_bytes_stored(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_notes(rows=1, kb=6000))  # one 6,144,000-byte file: two 4 MiB ranges
    model = NetworkModel(np.random.default_rng(0), down_kbps=50_000, up_kbps=50_000, name="fast")
    device = rig.device("manager-0001", network=model)
    cut: list[int] = []

    async def cut_a_quarter_in() -> None:
        while sum(device.store.files.values()) < 1_000_000:
            await asyncio.sleep(0)
        cut.append(sum(device.store.files.values()))
        device.link.go_offline()
        asyncio.get_running_loop().call_soon(device.link.go_online)

    cutter = asyncio.ensure_future(cut_a_quarter_in())
    record = await device.sync_once()
    await cutter
    assert cut and record.result == "success" and record.restarts == 1
    assert device.store.file_snapshot() == _expected_files(rig)  # 6,144,000 bytes, byte for byte
    assert record.file_bytes == 6_144_000 and record.refetched_bytes == 0


async def test_a_row_changed_without_its_file_does_not_download_the_file_again(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_notes())
    device = rig.device("manager-0001")
    await device.sync_once()
    table = rig.state.store.table("annotation")
    for row in list(table):
        rig.state.store.write(table, Row(row.id, rig.state.store.next_version(), row.owner, row.team,
                                         row.modified, {**row.values, "description": "edited"}, row.files))
    record = await device.sync_once()
    assert record.rows == 4 and record.file_bytes == 0
    assert device.store.file_snapshot() == _expected_files(rig)


async def test_a_file_removed_on_the_server_is_removed_from_the_device(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_notes())
    device = rig.device("manager-0001")
    await device.sync_once()
    table = rig.state.store.table("annotation")
    row = next(iter(table))
    rig.state.store.write(table, Row(row.id, rig.state.store.next_version(), row.owner, row.team,
                                     row.modified, dict(row.values), None))
    await device.sync_once()
    assert f"annotation/{row.id}/documentbody" not in device.store.files
    assert device.store.file_snapshot() == _expected_files(rig) and len(_expected_files(rig)) == 3


def _note_editor(delete_depth: str = "org") -> Scenario:
    """A manager who edits notes (updates or deletes) under last writer wins."""
    s = _notes()
    cls = {**s.user_classes[0].model_dump(), "privileges": {"annotation": {"read": "org", "write": "org",
                                                                            "delete": delete_depth}},
           "behaviour": {"edit_mix": {"update": 1 if delete_depth == "org" else 0, "create": 0,
                                      "delete": 0 if delete_depth == "org" else 1}}}
    return s.model_copy(update={"user_classes": [type(s.user_classes[0])(**cls)]})


async def test_an_overwrite_of_someone_elses_change_brings_their_change_to_the_device(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_note_editor())
    device = rig.device("manager-0001")
    await device.sync_once()
    op = device.edit()
    assert op is not None and op.kind == "update"
    table = rig.state.store.table("annotation")
    row = table.rows[op.row_id]  # the back office removes the note's file before the device uploads
    rig.state.store.write(table, Row(row.id, rig.state.store.next_version(), row.owner, row.team,
                                     row.modified, dict(row.values), None))
    record = await device.sync_once()
    assert record.conflicts == 1  # last writer wins: applied over the newer version
    assert f"annotation/{op.row_id}/documentbody" not in device.store.files  # the merged row came down
    assert device.store.file_snapshot() == _expected_files(rig) and rig.check(device).ok


async def test_a_refused_delete_restores_the_row_and_its_file(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_note_editor(delete_depth="none"))
    device = rig.device("manager-0001")
    await device.sync_once()
    op = device.edit()
    assert op is not None and op.kind == "delete" and device.store.version("annotation", op.row_id) is None
    record = await device.sync_once()
    assert record.rejections == 1
    assert device.store.file_snapshot() == _expected_files(rig) and rig.check(device).ok
