"""A device against a server that loses answers, cuts pages and files half-way, drops connections
and answers 503: every sync still ends right, and the run's ledger finds nothing wrong."""

from __future__ import annotations

from typing import Any

from tests.conftest import SMALL, small_scenario
from tests.rig import Rig


async def test_a_device_survives_every_server_fault_and_the_ledger_finds_no_violation(rig_factory: Any) -> None:
    faults = {"cut_rate": 0.3, "lose_answer_rate": 0.5, "drop_rate": 0.05, "error_rate": 0.05}
    cls = {**SMALL["user_classes"][0], "count": 1, "behaviour": {"edit_tables": ["msdyn_workorder"]}}
    tables = [dict(t) for t in SMALL["tables"]]
    tables[0] = {**tables[0], "rows": 600}  # pages large enough to be streamed (and cut) too
    rig: Rig = await rig_factory(small_scenario(tables=tables, user_classes=[cls], server={"faults": faults}))
    device = rig.device("technician-0001", page_size=400)
    assert (await device.sync_once()).result == "success"
    for _ in range(4):
        for _ in range(8):
            device.edit()
        record = await device.sync_once()
        assert record.result == "success", record
    assert len(device.outbox) == 0 and rig.check(device).ok
    injected = rig.state.counters.faults
    assert min(injected[k] for k in ("cut", "lose_answer", "drop", "error")) > 0, injected
    ledger = await rig.ledger(device)
    assert ledger["passed"], {k: v for k, v in ledger["invariants"].items() if v["violations"]}
    assert ledger["invariants"]["exactly_once"]["checked"] >= 20
