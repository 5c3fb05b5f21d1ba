"""Single-row writes: conflict policies, privileges, idempotent retries, validation, throttling."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

from aiohttp import web

from simulator.server.app import make_app
from simulator.server.seed import build_store
from tests.conftest import SMALL, Api, small_scenario

WO = "/api/data/v9.2/msdyn_workorders"


async def api_for(aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application], **changes: Any) -> Api:
    return Api(await aiohttp_client(make_server(small_scenario(**changes))))


async def a_row(api: Api, user: str = "technician-0001") -> tuple[str, str]:
    table = api.state.store.table("msdyn_workorder")
    row = next(r for r in table.rows.values() if api.state.store.users[r.owner].name == user)
    return row.id, f'W/"{row.version}"'


async def test_a_stale_if_match_is_412_whatever_the_tables_policy_as_in_dataverse(api: Api) -> None:
    """Found with the SDK: with detection off a stale If-Match used to overwrite. Dataverse always
    answers 412; the policy is how the device writes, not a switch on HTTP preconditions."""
    assert api.state.store.table("msdyn_workorder").conflict_detection is False
    row_id, etag = await a_row(api)
    first = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": 1}, headers={"If-Match": etag})
    assert first.status == 204 and "x-syncsim-conflict" not in first.headers
    stale = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_priority": 3}, headers={"If-Match": etag})
    assert stale.status == 412 and (await stale.json())["error"]["code"] == "0x80060882"
    gone = await api.call("DELETE", f"{WO}({row_id})", headers={"If-Match": etag})
    assert gone.status == 412 and row_id in api.state.store.table("msdyn_workorder").rows
    assert api.state.store.table("msdyn_workorder").rows[row_id].values.get("msdyn_priority") != 3
    assert api.state.counters.conflicts["msdyn_workorder/technician-0001"] == 2


async def test_last_writer_wins_applies_a_write_on_an_older_base_and_counts_the_overwrite(api: Api) -> None:
    row_id, etag = await a_row(api)
    base = etag[3:-1]
    first = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": 1},
                           headers={"If-Match": "*", "x-syncsim-base-version": base})
    assert first.status == 204 and "x-syncsim-conflict" not in first.headers  # its base is the row's version
    stale = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_priority": 3},
                           headers={"If-Match": "*", "x-syncsim-base-version": base})
    assert stale.status == 204 and stale.headers["x-syncsim-conflict"] == "true"
    row = api.state.store.table("msdyn_workorder").rows[row_id]
    assert (row.values["msdyn_duration"], row.values["msdyn_priority"]) == (1, 3)  # column-level last writer wins
    assert api.state.counters.conflicts["msdyn_workorder/technician-0001"] == 1
    assert [w.base for w in api.state.write_log.writes] == [int(base), int(base)]  # the ledger sees both bases
    bad = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_priority": 1},
                         headers={"If-Match": "*", "x-syncsim-base-version": "soon"})
    assert bad.status == 400 and "x-syncsim-base-version" in (await bad.json())["error"]["message"]


async def test_detection_on_refuses_a_stale_write_and_keeps_the_server_copy(
        aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> None:
    api = await api_for(aiohttp_client, make_server, server={"conflict_detection": True})
    row_id, etag = await a_row(api)
    assert (await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": 1}, headers={"If-Match": etag})).status == 204
    stale = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": 2}, headers={"If-Match": etag})
    assert stale.status == 412
    assert (await stale.json())["error"]["code"] == "0x80060882"
    assert api.state.store.table("msdyn_workorder").rows[row_id].values["msdyn_duration"] == 1
    assert api.state.counters.conflicts["msdyn_workorder/technician-0001"] == 1


async def test_a_retried_create_with_the_same_key_makes_one_row_and_a_changed_body_is_422(api: Api) -> None:
    body = {"msdyn_workorderid": "11111111-2222-4333-8444-555555555555", "msdyn_duration": 5}
    headers = {"x-syncsim-idempotency-key": "op-1"}
    table = api.state.store.table("msdyn_workorder")
    before = len(table)
    first = await api.call("POST", WO, json=body, headers=headers)
    again = await api.call("POST", WO, json=body, headers=headers)
    assert (first.status, again.status) == (204, 204) and again.headers["x-syncsim-replayed"] == "true"
    assert again.headers["OData-EntityId"] == first.headers["OData-EntityId"]
    assert len(table) == before + 1
    changed = await api.call("POST", WO, json={**body, "msdyn_duration": 6}, headers=headers)
    assert changed.status == 422


async def test_a_write_without_privilege_is_403_naming_the_privilege_and_counted(api: Api) -> None:
    row_id = next(iter(api.state.store.table("account").rows))
    resp = await api.call("PATCH", f"/api/data/v9.2/accounts({row_id})", "manager-0001", json={"revenue": 1.0},
                          headers={"If-Match": "*"})
    if api.state.store.table("account").rows[row_id].owner == api.state.store.users_by_name["manager-0001"].index:
        return  # the manager owns it: nothing to refuse
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error["code"] == "0x80040220" and "prvWriteaccount" in error["message"]
    assert api.state.counters.rejections["account/manager-0001"] == 1


async def test_bad_writes_are_4xx_and_change_nothing(api: Api) -> None:
    row_id, _ = await a_row(api)
    table = api.state.store.table("msdyn_workorder")
    version = api.state.store.version
    cases = [
        (await api.call("PATCH", f"{WO}({row_id})", json={"nope": 1}), 400),
        (await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_priority": 9}), 400),
        (await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": "x"}), 400),
        (await api.call("PATCH", f"{WO}({row_id})", data=b"{not json", headers={"Content-Type": "application/json"}), 400),
        (await api.call("PATCH", f"{WO}({row_id})", data=b"<x/>", headers={"Content-Type": "application/xml"}), 415),
        (await api.call("PATCH", f"{WO}(not-a-guid)", json={}), 400),
        (await api.call("DELETE", f"{WO}(00000000-0000-4000-8000-000000000000)"), 404),
    ]
    assert [status for _, status in cases] == [resp.status for resp, _ in cases]
    assert api.state.store.version == version and row_id in table.rows


async def test_a_number_outside_its_columns_min_and_max_is_refused_as_dataverse_does(api: Api) -> None:
    row_id, _ = await a_row(api)  # msdyn_duration: integer, MinValue 0, MaxValue 480
    version = api.state.store.version
    for value in (481, -1):
        resp = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": value})
        error = (await resp.json())["error"]
        assert resp.status == 400 and error["code"] == "0x80044331", error
        assert "Accepted Values: 0 to 480" in error["message"]
    assert api.state.store.version == version
    assert (await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": 480})).status == 204


async def test_past_the_request_limit_the_answer_is_429_with_retry_after(
        aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application], clock: Any) -> None:
    api = await api_for(aiohttp_client, make_server, server={"limits": {"requests": 3, "window_s": 300}})
    statuses = [(await api.call("GET", "/api/data/v9.2/accounts?$top=1")).status for _ in range(3)]
    refused = await api.call("GET", "/api/data/v9.2/accounts?$top=1")
    assert statuses == [200, 200, 200] and refused.status == 429
    assert (await refused.json())["error"]["code"] == "0x80072322"
    wait = int(refused.headers["Retry-After"])
    assert 0 < wait <= 300
    clock.advance(wait)
    assert (await api.call("GET", "/api/data/v9.2/accounts?$top=1")).status == 200
    assert (await api.call("GET", "/api/data/v9.2/accounts?$top=1", "technician-0002")).status == 200  # per user


async def test_past_the_concurrency_limit_the_answer_is_429_at_once(
        aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> None:
    api = await api_for(aiohttp_client, make_server, server={"limits": {"concurrent": 1},
                                                            "faults": {"latency_ms": 200}})
    first, second = await asyncio.gather(api.call("GET", "/api/data/v9.2/accounts?$top=1"),
                                         api.call("GET", "/api/data/v9.2/accounts?$top=1"))
    assert sorted([first.status, second.status]) == [200, 429]
    refused = first if first.status == 429 else second
    assert (await refused.json())["error"]["code"] == "0x80072326"


async def test_a_lookup_bound_to_a_row_that_does_not_exist_is_refused_and_nothing_is_written(api: Api) -> None:
    notes = api.state.store.table("annotation")
    before = (len(notes), api.state.store.version)
    missing = "00000000-0000-0000-0000-00000000beef"
    resp = await api.call("POST", "/api/data/v9.2/annotations", "manager-0001",
                          json={"objectid@odata.bind": f"/msdyn_workorders({missing})"})
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["code"] == "0x80040217" and missing in body["error"]["message"]
    assert (len(notes), api.state.store.version) == before


async def test_the_write_log_names_the_device_op_and_base_of_each_write_and_refusal(api: Api) -> None:
    table = api.state.store.table("msdyn_workorder")
    user = api.state.store.users_by_name["technician-0001"]
    row_id = sorted(table.by_owner[user.index])[0]
    base = table.rows[row_id].version
    headers = {"x-syncsim-op-id": "dev-technician-0001-1", "If-Match": f'W/"{base}"'}
    resp = await api.call("PATCH", f"/api/data/v9.2/msdyn_workorders({row_id})", device=True, headers=headers,
                          json={"msdyn_duration": 7})
    assert resp.status == 204
    stale = {"x-syncsim-op-id": "dev-technician-0001-2", "If-Match": f'W/"{base}"'}
    refused = await api.call("DELETE", f"/api/data/v9.2/msdyn_workorders({row_id})", device=True, headers=stale)
    assert refused.status == 412
    (write,) = api.state.write_log.writes
    assert (write.row_id, write.kind, write.user, write.device, write.op, write.base) == (
        row_id, "update", "technician-0001", "dev-technician-0001", "dev-technician-0001-1", base)
    assert write.version == table.rows[row_id].version
    (refusal,) = api.state.write_log.refusals
    assert (refusal.op, refusal.status, refusal.code, refusal.at_version) == (
        "dev-technician-0001-2", 412, "ConcurrencyVersionMismatch", write.version)


async def test_execution_time_stops_when_a_streamed_answer_starts_not_when_a_slow_client_has_read_it(
        aiohttp_client: Callable[..., Any], clock: Any) -> None:
    from simulator.server.middlewares import PROTECTION

    scenario = small_scenario()
    app = make_app(scenario, build_store(scenario, clock.now()), clock, admin_key="admin")

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await clock.sleep_real(30)  # the client reads slowly: 30 s of transfer after the answer started
        await response.write(b"x")
        return response

    app.router.add_get("/api/data/v9.2/slow", slow_stream)
    recorded: list[float] = []
    guard = app[PROTECTION]
    real_release = guard.release
    guard.release = lambda user, now, exec_s: (recorded.append(exec_s), real_release(user, now, exec_s))[1]  # type: ignore[method-assign]
    client = Api(await aiohttp_client(app))
    resp = await client.call("GET", "/api/data/v9.2/slow")
    assert resp.status == 200 and recorded == [0.0]


async def _refused(resp: Any, status: int, code: str) -> str:
    """The message of an error answer with this status and Dataverse code."""
    body = await resp.json()
    assert (resp.status, body["error"]["code"]) == (status, code), body
    return str(body["error"]["message"])


async def test_numbers_past_what_their_column_type_holds_are_400_and_change_nothing(api: Api) -> None:
    """Whole numbers are Edm.Int32; decimals are limited to ±100 billion (and .NET's decimal before that)."""
    row_id, _ = await a_row(api)
    account = next(iter(api.state.store.table("account").rows))
    version = api.state.store.version
    for value in (2**31, -(2**31) - 1, 2**64 - 1):
        message = await _refused(await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_duration": value}),
                                 400, "0x80048d19")
        assert message == f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'."
    for value, code in ((1e12, "0x80044331"), (-100_000_000_001, "0x80044331"), (1e30, "0x80048d19"), (1e308, "0x80048d19")):
        await _refused(await api.call("PATCH", f"/api/data/v9.2/accounts({account})", "manager-0001",
                                      json={"revenue": value}), 400, code)
    assert api.state.store.version == version
    fits = await api.call("PATCH", f"/api/data/v9.2/accounts({account})", "manager-0001", json={"revenue": 1e3})
    assert fits.status == 204  # the column's own MaxValue (1,000), below the ±100 billion of every decimal


async def test_a_lookup_value_column_is_read_only_and_set_through_its_navigation_property(api: Api) -> None:
    """Dataverse: "CRM do not support direct update of Entity Reference properties" (400 0x80060888)."""
    row_id, _ = await a_row(api)
    version, rows = api.state.store.version, len(api.state.store.table("msdyn_workorder"))
    dangling = "00000000-0000-4000-8000-00000000beef"
    for method, url in (("PATCH", f"{WO}({row_id})"), ("POST", WO)):
        for key in ("_msdyn_account_value", "_ownerid_value"):
            message = await _refused(await api.call(method, url, json={key: dangling}), 400, "0x80060888")
            assert message.startswith("CRM do not support direct update of Entity Reference properties")
    assert (api.state.store.version, len(api.state.store.table("msdyn_workorder"))) == (version, rows)


async def test_a_primary_id_in_a_patch_body_must_name_the_urls_row(api: Api) -> None:
    row_id, _ = await a_row(api)
    table = api.state.store.table("msdyn_workorder")
    version, rows = api.state.store.version, len(table)
    other = "00000000-0000-4000-8000-0000000000aa"
    message = await _refused(await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_workorderid": other}),
                             400, "0x80048d19")
    assert other in message and row_id in message
    await _refused(await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_workorderid": "not-a-guid"}), 400, "0x80048d19")
    absent = "00000000-0000-4000-8000-0000000000bb"  # an upsert creating a row: the URL's id, not the body's
    await _refused(await api.call("PATCH", f"{WO}({absent})", json={"msdyn_workorderid": other}), 400, "0x80048d19")
    assert (api.state.store.version, len(table), other in table.rows) == (version, rows, False)
    same = await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_workorderid": "{" + row_id.upper() + "}", "name": "x"})
    assert same.status == 204 and table.rows[row_id].values["name"] == "x"


async def test_the_primary_id_column_cannot_be_cleared_through_the_column_route(api: Api) -> None:
    row_id, _ = await a_row(api)
    version = api.state.store.version
    await _refused(await api.call("DELETE", f"{WO}({row_id})/msdyn_workorderid"), 400, "0x80048d19")
    assert api.state.store.version == version and not api.state.write_log.writes


async def test_date_times_outside_crmdatetimes_range_are_400_as_in_dataverse(
        aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> None:
    tables = copy.deepcopy(SMALL["tables"])
    tables[1]["columns"].append({"name": "msdyn_due", "type": "datetime"})
    api = await api_for(aiohttp_client, make_server, tables=tables)
    row_id, _ = await a_row(api)
    version = api.state.store.version
    message = await _refused(await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_due": "1752-12-31T23:59:59Z"}),
                             400, "0x80040239")
    assert message == ("DateTime is less than minumum value supported by CrmDateTime. Actual value: "
                       "12/31/1752 23:59:59, Minimum value supported: 01/01/1753 00:00:00")
    for value in ("0001-01-01T00:00:00+01:00", "1753-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00"):
        await _refused(await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_due": value}), 400, "0x80040239")
    for value in (20240101, "tomorrow"):
        await _refused(await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_due": value}), 400, "0x80044331")
    assert api.state.store.version == version
    for value in ("1753-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        assert (await api.call("PATCH", f"{WO}({row_id})", json={"msdyn_due": value})).status == 204
