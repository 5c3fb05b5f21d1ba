"""Property: for any sequence of server edits, the tracked download followed by the delta links in
order reproduces exactly the user's snapshot (rows and versions)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.clock import ManualClock
from simulator.server.app import make_app
from simulator.server.mutations import Writer
from simulator.server.privileges import change_privilege
from simulator.server.seed import build_store
from simulator.server.state import STATE, ServerState
from tests.conftest import small_scenario

TABLES = [("account", "accounts", "accountid"), ("msdyn_workorder", "msdyn_workorders", "msdyn_workorderid"),
          ("annotation", "annotations", "annotationid")]
USERS = ["technician-0001", "technician-0002", "manager-0001"]

edit = st.one_of(
    st.tuples(st.just("update"), st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 3)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("create"), st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 3)),
    st.tuples(st.just("privilege"), st.integers(0, 2), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("sync"), st.just(0), st.just(0), st.just(0)),
)


class Device:
    """A minimal change-tracking client: {table: {id: version}} plus delta links."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.token = client, token
        self.rows: dict[str, dict[str, int]] = {t: {} for t, _, _ in TABLES}
        self.links: dict[str, str] = {}

    async def sync(self) -> None:
        for table, set_name, id_col in TABLES:
            link = self.links.get(table, f"/api/data/v9.2/{set_name}")
            while True:
                path = link.split("://", 1)[-1].split("/", 1)[-1] if "://" in link else link.lstrip("/")
                resp = await self.client.get("/" + path, headers={
                    "Authorization": f"Bearer {self.token}", "x-syncsim-device-id": "d",
                    "Prefer": "odata.track-changes,odata.maxpagesize=3"})
                assert resp.status == 200, await resp.text()
                body = await resp.json()
                for item in body["value"]:
                    if item.get("reason") == "deleted":
                        self.rows[table].pop(item["id"], None)
                    else:
                        self.rows[table][item[id_col]] = item["versionnumber"]
                if "@odata.nextLink" in body:
                    link = body["@odata.nextLink"]
                    continue
                self.links[table] = body["@odata.deltaLink"]
                break


def apply_edit(state: ServerState, step: tuple[str, int, int, int]) -> None:
    kind, t, pick, extra = step
    store = state.store
    table = store.table(TABLES[t][0])
    ids = sorted(table.rows)
    writer = Writer(state, store.users_by_name["backoffice"])
    owners = [u for u in store.users if u.user_class != "backoffice"]
    if kind == "privilege":
        user = store.users_by_name[USERS[extra]]
        change_privilege(state, user, TABLES[t][0], {"read": ("none", "org")[pick]})
    elif kind == "create":
        row = writer.create(table, {}).row
        assert row is not None
        _reassign(writer, table, row.id, owners[extra % len(owners)].id)
    elif ids and kind == "delete":
        writer.delete(table, ids[pick % len(ids)])
    elif ids and kind == "update":
        row_id = ids[pick % len(ids)]
        if extra == 0:
            _reassign(writer, table, row_id, owners[pick % len(owners)].id)
        else:
            writer.update(table, row_id, {table.meta.primary_name: f"v{pick}"}, if_match="*")


def _reassign(writer: Writer, table: Any, row_id: str, user_id: str) -> None:
    writer.update(table, row_id, {"ownerid@odata.bind": f"/systemusers({user_id})"}, if_match="*")


async def run_case(steps: list[tuple[str, int, int, int]]) -> None:
    clock = ManualClock()
    scenario = small_scenario()
    app = make_app(scenario, build_store(scenario, clock.now()), clock, admin_key="admin")
    async with TestClient(TestServer(app)) as client:
        state = app[STATE]
        devices = {u: Device(client, state.issue_token(state.store.users_by_name[u])[0]) for u in USERS}
        for d in devices.values():
            await d.sync()
        for step in steps:
            if step[0] == "sync":
                await asyncio.gather(*(d.sync() for d in devices.values()))
            else:
                apply_edit(state, step)
        for name, d in devices.items():
            await d.sync()
            expected = state.access.snapshot(state.store.users_by_name[name])
            for table, _, _ in TABLES:
                assert d.rows[table] == expected.get(table, {}), f"{name} {table}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edit, min_size=1, max_size=25))
def test_tracked_download_then_deltas_reproduce_the_users_snapshot(steps: list[tuple[str, int, int, int]]) -> None:
    asyncio.run(run_case(steps))
