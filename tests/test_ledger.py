"""The run's ledger catches wrong numbers: each test puts back a bug of the kind found before (a
self-conflict, a lost or doubled edit, a first sync timed from its last attempt, Retry-After
ignored, a deleted row kept, a file cut short) and expects the invariant that names it to fail."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from simulator.clock import Timeline
from simulator.device.device import Device
from simulator.device.outbox import Added, Outbox
from simulator.scenario import Scenario
from tests.conftest import SMALL, small_scenario
from tests.rig import Rig


def _tech_scenario(detect: bool = True, **server: Any) -> Scenario:
    tables = [dict(t) for t in SMALL["tables"]]
    tables[1] = {**tables[1], "rows": 5}
    cls = {**SMALL["user_classes"][0], "count": 1,
           "behaviour": {"edit_tables": ["msdyn_workorder"], "upload_mode": "one_by_one",
                         "edit_mix": {"update": 1, "create": 0, "delete": 0}}}
    return small_scenario(tables=tables, user_classes=[cls], server={"conflict_detection": detect, **server})


async def _edit_and_sync(device: Device, syncs: int = 3, edits: int = 10) -> None:
    await device.sync_once()
    for _ in range(syncs):
        for _ in range(edits):
            device.edit()
        await device.sync_once()


def _add_without_merging(self: Outbox, op: Any) -> Added:
    """Outbox.add as it was: every edit its own op (so later edits of a row rely on chaining)."""
    self._ops[op.op_id] = op
    self._rows.setdefault((op.table, op.row_id), []).append(op)
    return Added()


def _violations(ledger: dict[str, Any]) -> dict[str, int]:
    return {name: r["violations"] for name, r in ledger["invariants"].items() if r["violations"]}


async def test_a_clean_run_passes_and_its_conflicts_are_the_ledgers(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_tech_scenario())
    device = rig.device("technician-0001")
    await device.sync_once()
    table = rig.state.store.table("msdyn_workorder")
    for _ in range(3):
        for _ in range(6):
            device.edit()
        for row in list(table)[:2]:  # the back office changes two rows the device may be editing
            rig.back_office_update("msdyn_workorder", row.id)
        await device.sync_once()
    ledger = await rig.ledger(device)
    assert ledger["passed"], _violations(ledger)
    assert ledger["conflicts"]["reported"] == ledger["conflicts"]["ledger"] > 0
    unchecked = {name for name, r in ledger["invariants"].items() if not r["checked"]}
    assert unchecked == {"deleted_rows_stay_deleted", "revoked_rows_gone_after_next_sync",  # none in this run
                         "throttling_honoured"} == set(ledger["not_exercised"])


async def test_a_self_conflict_is_caught_by_the_conflict_recount(rig_factory: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(Outbox, "chain", lambda self, table, row_id, version: None)  # the old bug
    monkeypatch.setattr(Outbox, "add", _add_without_merging)
    rig: Rig = await rig_factory(_tech_scenario(detect=True))
    device = rig.device("technician-0001")
    await _edit_and_sync(device)
    ledger = await rig.ledger(device)
    assert not ledger["passed"]
    assert _violations(ledger).get("conflicts_match_ledger", 0) > 0
    example = ledger["invariants"]["conflicts_match_ledger"]["examples"][0]
    assert "dev-technician-0001 op dev-technician-0001-" in example and "msdyn_workorder/" in example
    assert ledger["conflicts"]["ledger"] == 0 < ledger["conflicts"]["reported"]


async def test_an_edit_dropped_from_the_outbox_is_caught_as_lost(rig_factory: Any, monkeypatch: Any) -> None:
    rig: Rig = await rig_factory(_tech_scenario())
    device = rig.device("technician-0001")
    await device.sync_once()
    op = device.edit()
    assert op is not None
    device.outbox.done(device.outbox.next_group(1))  # gone without an answer
    await device.sync_once()
    ledger = await rig.ledger(device)
    assert _violations(ledger) == {"nothing_lost": 1}
    assert op.op_id in ledger["invariants"]["nothing_lost"]["examples"][0]


async def test_an_upload_applied_twice_is_caught(rig_factory: Any) -> None:
    @web.middleware
    async def answer_lost_and_forgotten(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "PATCH" and not hasattr(answer_lost_and_forgotten, "done"):
            answer_lost_and_forgotten.done = True  # type: ignore[attr-defined]
            rig.state.idempotency.clear()  # the server forgets the key: the retry applies again
            return web.Response(status=503)
        return response

    rig: Rig = await rig_factory(_tech_scenario(detect=False), middlewares=[answer_lost_and_forgotten])
    device = rig.device("technician-0001")
    await device.sync_once()
    device.edit()
    await device.sync_once()
    violations = _violations(await rig.ledger(device))
    assert violations.get("exactly_once") == 1


async def test_a_first_sync_timed_from_its_last_attempt_is_caught(rig_factory: Any, monkeypatch: Any) -> None:
    from simulator.device.first_sync import FirstSyncTracker

    real_begin, real_result = FirstSyncTracker.begin, FirstSyncTracker.result

    def restart_every_attempt(self: FirstSyncTracker, scenario_now: float, lived_now: float) -> None:
        self.started_at = None  # the old bug: each attempt starts the clock again
        real_begin(self, scenario_now, lived_now)

    def from_the_attempt(self: FirstSyncTracker, lived_now: float, finished: bool, first: float | None,
                         **kw: Any) -> Any:
        return real_result(self, lived_now, finished, None, **kw)

    monkeypatch.setattr(FirstSyncTracker, "begin", restart_every_attempt)
    monkeypatch.setattr(FirstSyncTracker, "result", from_the_attempt)
    failing = {"left": 1}

    @web.middleware
    async def fail_once(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/accounts") and failing["left"]:
            failing["left"] -= 1
            return web.Response(status=503)
        return await handler(request)

    rig: Rig = await rig_factory(_tech_scenario(), middlewares=[fail_once])
    device = rig.device("technician-0001")
    device.api.max_retries = 0
    assert (await device.sync_once()).result == "failed"
    await device.timeline.sleep(600, "idle")
    assert (await device.sync_once()).result == "success"
    violations = _violations(await rig.ledger(device))
    assert violations == {"first_sync_durations_match": 1}


async def test_a_device_that_ignores_retry_after_is_caught(rig_factory: Any, monkeypatch: Any) -> None:
    rig: Rig = await rig_factory(_tech_scenario(limits={"requests": 3, "window_s": 60}))
    device = rig.device("technician-0001", page_size=2)
    real_sleep = Timeline.sleep

    async def impatient(self: Timeline, seconds: float, kind: str) -> None:
        await real_sleep(self, seconds / 10 if kind == "retry_after" else seconds, kind)

    monkeypatch.setattr(Timeline, "sleep", impatient)
    await device.sync_once()
    violations = _violations(await rig.ledger(device))
    assert violations.get("throttling_honoured", 0) > 0


async def test_a_deleted_row_or_a_short_file_left_on_a_device_is_caught(rig_factory: Any) -> None:
    rig: Rig = await rig_factory()
    device = rig.device("manager-0001")
    await device.sync_once()
    accounts = rig.state.store.table("account")
    gone = next(iter(accounts.rows))
    rig.state.store.delete(accounts, gone)
    await device.sync_once()
    device.store.put("account", gone, 1, 100)  # a zombie the delta should have removed
    key = next(iter(device.store.files))
    device.store.file_crcs[key] ^= 1  # a file that is not byte for byte the server's
    violations = _violations(await rig.ledger(device))
    assert violations["deleted_rows_stay_deleted"] == 1
    assert violations["devices_hold_their_view"] == 2  # the extra row and the file


@pytest.mark.parametrize("kind", ["update", "delete"])
async def test_every_invariant_holds_with_a_back_office_writer_and_both_edit_kinds(rig_factory: Any, kind: str) -> None:
    scenario = _tech_scenario(detect=False)
    cls = {**scenario.user_classes[0].model_dump(), "behaviour": {
        "edit_tables": ["msdyn_workorder"], "edit_mix": {"update": 0, "create": 0, "delete": 0, kind: 1}}}
    rig: Rig = await rig_factory(scenario.model_copy(update={"user_classes": [type(scenario.user_classes[0])(**cls)]}))
    device = rig.device("technician-0001")
    await device.sync_once()
    table = rig.state.store.table("msdyn_workorder")
    for i in range(4):
        device.edit()
        row = sorted(table.rows.values(), key=lambda r: r.id)[i % len(table.rows)]
        rig.back_office_update("msdyn_workorder", row.id)
        await device.sync_once()
    ledger = await rig.ledger(device)
    assert ledger["passed"], _violations(ledger)


async def test_a_revoked_row_kept_after_the_next_sync_is_caught(rig_factory: Any, monkeypatch: Any) -> None:
    from simulator.runner import held_probe
    from simulator.server.handlers import changes
    from simulator.server.privileges import change_privilege

    rig: Rig = await rig_factory()
    device = rig.device("technician-0001")
    rig.journal.watch(device.spec.name, held_probe(device))
    await device.sync_once()
    change_privilege(rig.state, rig.state.store.users_by_name["technician-0001"], "account", {"read": "none"})
    assert (await device.sync_once()).result == "success"
    assert (await rig.ledger(device))["invariants"]["revoked_rows_gone_after_next_sync"] == {
        "checked": 1, "violations": 0, "examples": []}
    # now a server that forgets tombstones for privilege changes: the rows stay on a second device
    monkeypatch.setattr(changes, "_version_of", lambda entry: 10**12)  # the view log is never read
    other = rig.device("technician-0002")
    rig.journal.watch(other.spec.name, held_probe(other))
    await other.sync_once()
    change_privilege(rig.state, rig.state.store.users_by_name["technician-0002"], "account", {"read": "none"})
    await other.sync_once()
    invariant = (await rig.ledger(device, other))["invariants"]["revoked_rows_gone_after_next_sync"]
    assert invariant["violations"] == 20 and "dev-technician-0002 account/" in invariant["examples"][0]


def test_a_run_without_429s_leaves_throttling_not_exercised_and_its_paths_say_so() -> None:
    """An invariant that checked nothing is "not exercised" (a green row that promises nothing), and
    the paths table says which paths the run never reached."""
    from simulator.ledger import Journal, check_run
    from simulator.ledger.paths import paths_reached

    server = {"seed_version": 0, "writes": [], "refusal_fields": ["op", "at_version"], "refusals": [],
              "early_requests": [], "current": {}, "deleted": {}, "view_changes": []}
    journal = Journal()
    ledger = check_run(journal, server, [], {})
    assert ledger["passed"] and "throttling_honoured" in ledger["not_exercised"]
    journal._request(device="d", started_at=0.0, status=429)
    journal._request(device="d", started_at=1.0, status=200)
    ledger = check_run(journal, server, [], {})
    assert ledger["invariants"]["throttling_honoured"]["checked"] == 1
    assert "throttling_honoured" not in ledger["not_exercised"]
    paths = paths_reached(journal, {"faults": {"lose_answer": 2}, "delta_continuations": 0}, ledger["invariants"])
    assert paths["429s met by devices"] == 1 and paths["answers lost after a write was applied"] == 2
    assert paths["delta continuation pages"] == 0 and paths["syncs stopped by a full device"] == 0
