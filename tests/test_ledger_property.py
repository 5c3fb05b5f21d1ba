"""Property: for any interleaving of device edits and syncs, back-office writes and deletes,
privilege changes, airplane cuts, server faults (lost answers, cut answers, 503s) and cache
evictions, every device converges and the run's ledger finds no violation: nothing lost, no
phantom writes, exactly once, outboxes drain, views and files exact, revoked and deleted rows gone,
and the conflict count the devices report equals the one recomputed from the server's write log."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.clock import ManualClock
from simulator.device.device import Device
from simulator.runner import held_probe
from simulator.server.app import make_app
from simulator.server.errors import DataverseError
from simulator.server.mutations import Writer
from simulator.server.privileges import change_privilege
from simulator.server.seed import build_store
from tests.conftest import SMALL, small_scenario
from tests.rig import Rig

USERS = ["technician-0001", "technician-0002", "manager-0001"]
TABLES = ["msdyn_workorder", "annotation", "account"]

step = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 2), st.integers(1, 6)),
    st.tuples(st.just("sync"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("back_office"), st.integers(0, 2), st.integers(0, 10_000)),
    st.tuples(st.just("delete"), st.integers(0, 1), st.integers(0, 10_000)),
    st.tuples(st.just("privilege"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("cut"), st.integers(0, 2), st.integers(1, 8)),
    st.tuples(st.just("evict"), st.just(0), st.just(0)),
)
faults = st.fixed_dictionaries({
    "lose_answer_rate": st.sampled_from([0.0, 0.2]), "cut_rate": st.sampled_from([0.0, 0.1]),
    "error_rate": st.sampled_from([0.0, 0.05])})


def _scenario(detect: bool, server_faults: dict[str, float]) -> Any:
    both = {t: {"read": "org", "write": "org", "delete": "org"} for t in ("msdyn_workorder", "annotation")}
    tech = {**SMALL["user_classes"][0], "count": 2, "privileges": both,
            "behaviour": {"edit_tables": ["msdyn_workorder", "annotation"],
                          "edit_mix": {"update": 0.6, "create": 0.25, "delete": 0.15}}}
    manager = {**SMALL["user_classes"][1], "privileges": both,
               "behaviour": {"edit_tables": ["msdyn_workorder"], "upload_mode": "one_by_one"}}
    return small_scenario(user_classes=[tech, manager],
                          server={"conflict_detection": detect, "faults": server_faults})


def _back_office(rig: Rig, table_index: int, pick: int, delete: bool) -> None:
    table = rig.state.store.table(TABLES[table_index])
    ids = sorted(table.rows)
    writer = Writer(rig.state, rig.state.store.users_by_name["backoffice"])
    try:
        if delete and ids:
            writer.delete(table, ids[pick % len(ids)])
        elif ids and pick % 5:
            writer.update(table, ids[pick % len(ids)], {table.meta.primary_name: f"bo {pick}"}, if_match="*")
        else:
            writer.create(table, {table.meta.primary_name: f"bo new {pick}"})
    except DataverseError:
        pass  # e.g. a lookup-less create refused: the back office moves on


def _cut_after(rig: Rig, device: Device, requests: int) -> None:
    """Airplane mode for a moment after the device's next `requests` requests."""
    seen = {"n": 0}
    loop = asyncio.get_running_loop()

    def listener(**kw: Any) -> None:
        if kw.get("device") == device.spec.name:
            seen["n"] += 1
            if seen["n"] == requests:
                device.link.go_offline()
                loop.call_soon(device.link.go_online)
                rig.events.request.remove_listener(listener)

    rig.events.request.add_listener(listener)


async def run_case(steps: list[tuple[str, int, int]], detect: bool, server_faults: dict[str, float]) -> None:
    clock = ManualClock()
    scenario = _scenario(detect, server_faults)
    app = make_app(scenario, build_store(scenario, clock.now()), clock, admin_key="admin")
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            rig = Rig(server, clock, session)
            devices = [rig.device(u, page_size=25) for u in USERS]
            for d in devices:
                rig.journal.watch(d.spec.name, held_probe(d))
                await d.sync_once()
            for kind, who, n in steps:
                await _step(rig, devices, kind, who, n)
            for _ in range(2):  # the quiet period: everybody online, two rounds of final syncs
                for d in devices:
                    d.link.go_online()
                    for _attempt in range(4):
                        if (await d.sync_once()).result == "success":
                            break
            ledger = await rig.ledger(*devices)
            broken = {k: v for k, v in ledger["invariants"].items() if v["violations"]}
            assert ledger["passed"], broken
            assert ledger["conflicts"]["reported"] == ledger["conflicts"]["ledger"]
    finally:
        await server.close()


async def _step(rig: Rig, devices: list[Device], kind: str, who: int, n: int) -> None:
    device = devices[who]
    if kind == "edit":
        for _ in range(n):
            device.edit()
    elif kind == "sync":
        await device.sync_once()
    elif kind in ("back_office", "delete"):
        _back_office(rig, who, n, kind == "delete")
    elif kind == "privilege":
        user = rig.state.store.users_by_name[USERS[who]]
        table, change = [("account", {"read": "none"}), ("account", {"read": "org"}),
                         ("msdyn_workorder", {"write": "none"}), ("msdyn_workorder", {"write": "org"})][n]
        change_privilege(rig.state, user, table, change)
    elif kind == "cut":
        _cut_after(rig, device, n)
    else:
        rig.state.delta_cache.clear()
        rig.state.page_cache = type(rig.state.page_cache)(rig.state.page_cache.max_bytes)


@settings(suppress_health_check=[HealthCheck.too_slow])  # 30 examples; HYPOTHESIS_PROFILE=deep: 500
@given(st.lists(step, min_size=1, max_size=30), st.booleans(), faults)
def test_any_interleaving_converges_and_the_ledger_finds_no_violation(
        steps: list[tuple[str, int, int]], detect: bool, server_faults: dict[str, float]) -> None:
    asyncio.run(run_case(steps, detect, server_faults))
