"""Change tracking: first-sync pages, delta links, tombstones, token expiry, privilege changes."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

TRACK = {"Prefer": "odata.track-changes,odata.maxpagesize=7"}


async def track_all(api: Api, set_name: str, user: str, device: bool = True) -> tuple[dict[str, Any], str]:
    """Follow a tracked read to its deltaLink; return {id: row} and the deltaLink."""
    rows: dict[str, Any] = {}
    resp = await api.call("GET", f"/api/data/v9.2/{set_name}", user, device=device, headers=TRACK)
    while True:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        for item in body["value"]:
            rows[item.get("id") or item[next(k for k in item if k.endswith("id") and not k.startswith("_"))]] = item
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body
            resp = await api.call("GET", body["@odata.nextLink"], user, device=device, headers=TRACK)
            continue
        return rows, body["@odata.deltaLink"]


async def follow_delta(api: Api, link: str, user: str) -> tuple[list[dict[str, Any]], list[str], str]:
    changed: list[dict[str, Any]] = []
    removed: list[str] = []
    while True:
        resp = await api.call("GET", link, user, device=True, headers={"Prefer": "odata.maxpagesize=7"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        for item in body["value"]:
            if item.get("reason") == "deleted":
                removed.append(item["id"])
            else:
                changed.append(item)
        link = body.get("@odata.nextLink") or ""
        if not link:
            return changed, removed, body["@odata.deltaLink"]


async def test_first_sync_pages_return_exactly_the_device_profile_rows(api: Api) -> None:
    user = api.state.store.users_by_name["technician-0001"]
    rows, link = await track_all(api, "msdyn_workorders", user.name)
    table = api.state.store.table("msdyn_workorder")
    assert set(rows) == table.by_owner[user.index]
    assert "$deltatoken=" in link


async def test_plain_tracked_read_without_device_header_sees_all_privileged_rows(api: Api) -> None:
    rows, _ = await track_all(api, "msdyn_workorders", "technician-0001", device=False)
    assert len(rows) == 60


async def test_delta_returns_updates_and_tombstones_for_deleted_rows(api: Api) -> None:
    user = "technician-0001"
    rows, link = await track_all(api, "msdyn_workorders", user)
    some = sorted(rows)
    upd = await api.call("PATCH", f"/api/data/v9.2/msdyn_workorders({some[0]})", user,
                         json={"msdyn_duration": 5}, headers={"If-Match": rows[some[0]]["@odata.etag"]})
    assert upd.status == 204, await upd.text()
    dele = await api.call("DELETE", f"/api/data/v9.2/msdyn_workorders({some[1]})", user)
    assert dele.status == 204
    changed, removed, _ = await follow_delta(api, link, user)
    assert [c["msdyn_workorderid"] for c in changed] == [some[0]]
    assert changed[0]["msdyn_duration"] == 5
    assert removed == [some[1]]


async def test_delta_with_no_changes_is_empty_with_a_new_delta_link(api: Api) -> None:
    _, link = await track_all(api, "accounts", "technician-0001")
    changed, removed, new_link = await follow_delta(api, link, "technician-0001")
    assert changed == [] and removed == [] and "$deltatoken=" in new_link


async def test_expired_delta_token_answers_expired_version_stamp(api: Api, clock: Any) -> None:
    _, link = await track_all(api, "accounts", "technician-0001")
    clock.advance(8 * 86400)
    api.tokens.clear()  # access tokens expire too
    resp = await api.call("GET", link, "technician-0001", device=True)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "0x80044352"


async def test_revoked_read_privilege_comes_back_as_removals_at_next_sync(api: Api) -> None:
    user = "technician-0002"
    rows, link = await track_all(api, "msdyn_workorders", user)
    assert rows
    resp = await api.client.post("/_syncsim/privileges", json={"user": user, "table": "msdyn_workorder", "read": "none"},
                                 headers={"Authorization": "Bearer admin"})
    assert resp.status == 200, await resp.text()
    changed, removed, _ = await follow_delta(api, link, user)
    assert changed == [] and set(removed) == set(rows)


async def test_reassigned_row_leaves_old_owner_view_and_its_notes_follow(api: Api) -> None:
    store = api.state.store
    a, b = store.users_by_name["technician-0001"], store.users_by_name["technician-0002"]
    wo_rows, wo_link = await track_all(api, "msdyn_workorders", a.name)
    notes, notes_link = await track_all(api, "annotations", a.name)
    moved = next(i for i in sorted(wo_rows) if store.table("annotation").children["objectid"].get(i))
    resp = await api.call("PATCH", f"/api/data/v9.2/msdyn_workorders({moved})", a.name,
                          json={"ownerid@odata.bind": f"/systemusers({b.id})"})
    assert resp.status == 204, await resp.text()
    _, removed, _ = await follow_delta(api, wo_link, a.name)
    assert removed == [moved]
    _, removed_notes, _ = await follow_delta(api, notes_link, a.name)
    assert set(removed_notes) == store.table("annotation").children["objectid"][moved]
    assert set(removed_notes) <= set(notes)


async def test_tracked_read_refuses_filter(api: Api) -> None:
    resp = await api.call("GET", "/api/data/v9.2/accounts?$filter=revenue gt 1", headers=TRACK)
    assert resp.status == 400
    assert "isn't supported when Change Tracking is enabled" in (await resp.json())["error"]["message"]


async def test_rolled_back_changeset_leaves_no_trace_in_any_change_log(api: Api) -> None:
    from simulator.server.errors import DataverseError
    from simulator.server.mutations import Writer

    store = api.state.store
    account = store.table("account")
    parent = next(i for i in sorted(account.rows) if store.table("msdyn_workorder").children["msdyn_account"].get(i))
    before = {name: list(t.log) for name, t in store.tables.items()}
    owners_before = {name: {o: list(log) for o, (_, log) in t.owner_log.items()} for name, t in store.tables.items()}
    writer = Writer(api.state, store.users_by_name["backoffice"])
    writer.delete(account, parent)  # touches the work orders that look it up
    try:
        writer.update(account, "00000000-0000-4000-8000-000000000000", {}, if_match="*")
    except DataverseError:
        writer.undo()
    assert parent in account.rows
    assert {name: list(t.log) for name, t in store.tables.items()} == before
    assert {name: {o: list(log) for o, (_, log) in t.owner_log.items() if log}
            for name, t in store.tables.items()} == {name: {o: log for o, log in logs.items() if log}
                                                     for name, logs in owners_before.items()}
    assert all(len(t.log) == len(t.log_versions) for t in store.tables.values())
    assert all(len(v) == len(e) for t in store.tables.values() for v, e in t.owner_log.values())


async def test_users_with_the_same_view_share_pages_but_each_gets_a_fresh_delta_link(api: Api, clock: Any) -> None:
    prefer = {"Prefer": "odata.track-changes,odata.maxpagesize=7"}
    first = await api.call("GET", "/api/data/v9.2/accounts", "technician-0001", device=True, headers=prefer)
    second = await api.call("GET", "/api/data/v9.2/accounts", "technician-0002", device=True, headers=prefer)
    assert await first.read() == await second.read()  # same view of account: same page bytes
    assert api.state.page_cache.bytes > 0
    other = await api.call("GET", "/api/data/v9.2/msdyn_workorders", "technician-0002", device=True, headers=prefer)
    mine = await api.call("GET", "/api/data/v9.2/msdyn_workorders", "technician-0001", device=True, headers=prefer)
    assert await other.read() != await mine.read()  # owner filter: each sees its own rows
    rows, link = await track_all(api, "accounts", "technician-0001")
    clock.advance(3600)
    _, later = await track_all(api, "accounts", "technician-0002")
    assert link != later  # the last page is not shared: its deltaLink is dated when it is served


async def test_a_streamed_page_is_byte_for_byte_the_assembled_page(
        aiohttp_client: Any, make_server: Any) -> None:
    api = Api(await aiohttp_client(make_server(big_accounts())))
    prefer = {"Prefer": "odata.track-changes,odata.maxpagesize=1000"}
    first = await api.call("GET", "/api/data/v9.2/accounts", "manager-0001", headers=prefer)  # streamed
    again = await api.call("GET", "/api/data/v9.2/accounts", "manager-0001", headers=prefer)  # assembled, kept
    cached = await api.call("GET", "/api/data/v9.2/accounts", "manager-0001", headers=prefer)  # from the cache
    one, two, three = await first.read(), await again.read(), await cached.read()
    assert first.headers.get("Content-Length") == str(len(one))
    assert one == two == three and len(orjson_loads(one)["value"]) == 1000


async def test_a_large_tracked_read_inside_a_batch_comes_back_whole(
        aiohttp_client: Any, make_server: Any) -> None:
    from tests.conftest import small_scenario
    from tests.test_server_batch import sdk_batch, url

    big = small_scenario(tables=[{"logical_name": "account", "rows": 1200},
                                 {"logical_name": "msdyn_workorder", "rows": 0, "columns": [
                                     {"name": "msdyn_account", "type": "lookup", "target": "account"}]},
                                 {"logical_name": "annotation", "entity_set": "annotations", "rows": 0, "columns": [
                                     {"name": "objectid", "type": "lookup", "target": "msdyn_workorder"}]}])
    api = Api(await aiohttp_client(make_server(big)))
    prefer = {"Prefer": "odata.track-changes,odata.maxpagesize=1000"}
    from simulator.protocol.batch import parse_batch_response

    body = sdk_batch("batch_t", [("GET", url(api, "accounts"), None, prefer, None)])
    h = {"Content-Type": 'multipart/mixed; boundary="batch_t"'}
    resp = await api.call("POST", "/api/data/v9.2/$batch", "manager-0001", headers=h, data=body)
    raw = await resp.read()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("multipart/mixed"), raw[:200]
    (part,) = parse_batch_response(raw, resp.headers["Content-Type"])
    page = orjson_loads(part.body)
    assert part.status == 200 and len(page["value"]) == 1000 and "@odata.nextLink" in page


def big_accounts() -> Any:
    """The small scenario with 1,200 accounts, enough for pages that are streamed."""
    from tests.conftest import small_scenario

    return small_scenario(tables=[
        {"logical_name": "account", "rows": 1200},
        {"logical_name": "msdyn_workorder", "rows": 0,
         "columns": [{"name": "msdyn_account", "type": "lookup", "target": "account"}]},
        {"logical_name": "annotation", "entity_set": "annotations", "rows": 0,
         "columns": [{"name": "objectid", "type": "lookup", "target": "msdyn_workorder"}]}])


def orjson_loads(data: bytes) -> Any:
    import orjson

    return orjson.loads(data)


async def test_a_delta_continuation_skips_no_row_when_its_delta_left_the_cache(api: Api) -> None:
    user = "technician-0001"
    rows, link = await track_all(api, "msdyn_workorders", user)
    changed_ids = sorted(rows)[:10]
    for row_id in changed_ids:
        resp = await api.call("PATCH", f"/api/data/v9.2/msdyn_workorders({row_id})", user, json={"msdyn_duration": 9})
        assert resp.status == 204
    first = await (await api.call("GET", link, user, device=True, headers={"Prefer": "odata.maxpagesize=7"})).json()
    served = [item["msdyn_workorderid"] for item in first["value"]]
    assert len(served) == 7 and "@odata.nextLink" in first
    # a row served on page 1 is deleted and the delta leaves the cache before page 2 is asked for
    assert (await api.call("DELETE", f"/api/data/v9.2/msdyn_workorders({served[0]})", user)).status == 204
    api.state.delta_cache.clear()
    changed, removed, next_link = await follow_delta(api, first["@odata.nextLink"], user)
    assert set(served) | {c["msdyn_workorderid"] for c in changed} == set(changed_ids)  # nothing skipped
    later, later_removed, _ = await follow_delta(api, next_link, user)
    assert served[0] in removed + later_removed  # and the delete still reaches the device


async def test_a_user_who_reads_only_its_own_rows_gets_its_delta_from_its_owners_log(
        aiohttp_client: Any, make_server: Any) -> None:
    """With read depth `user` the delta is looked up among the changes of rows the user owned before
    or after them: the row it lost and the row it gained come back (a removal, a row), changes of
    other users' rows are not even looked at, and the delta is what the full change log gives."""
    from simulator.server.handlers.changes import delta_items
    from tests.conftest import SMALL, small_scenario

    privileges = {"msdyn_workorder": {"read": "user", "write": "org", "delete": "org"}}
    classes = [{**SMALL["user_classes"][0], "privileges": privileges}, *SMALL["user_classes"][1:]]
    api = Api(await aiohttp_client(make_server(small_scenario(user_classes=classes))))
    store = api.state.store
    a, b = store.users_by_name["technician-0001"], store.users_by_name["technician-0002"]
    table = store.table("msdyn_workorder")
    wo_rows, wo_link = await track_all(api, "msdyn_workorders", a.name)
    since = store.version
    lost = sorted(wo_rows)[0]
    gained = next(r for r in sorted(table.rows) if table.rows[r].owner == b.index)
    others = [r for r in sorted(table.rows) if table.rows[r].owner not in (a.index, b.index)][:3]
    for row_id, owner in ((lost, b), (gained, a)):
        resp = await api.call("PATCH", f"/api/data/v9.2/msdyn_workorders({row_id})", "backoffice",
                              json={"ownerid@odata.bind": f"/systemusers({owner.id})"})
        assert resp.status == 204, await resp.text()
    for row_id in others:
        await api.call("PATCH", f"/api/data/v9.2/msdyn_workorders({row_id})", "backoffice", json={"msdyn_priority": 1})
    own = table.changes_since(since, store.version, a.index)
    assert {lost, gained} <= set(own) and not set(others) & set(own)
    assert set(others) <= set(table.changes_since(since, store.version))
    changed, removed, _ = await follow_delta(api, wo_link, a.name)
    assert removed == [lost] and [r["msdyn_workorderid"] for r in changed] == [gained]
    items = delta_items(api.state.access, table, a, True, since, store.version)
    assert [i if isinstance(i, str) else i.id for i in items] == [gained, lost]
