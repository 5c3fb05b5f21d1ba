"""Bulk actions: CreateMultiple, UpdateMultiple, UpsertMultiple (all or nothing) and BulkDelete."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Api, small_scenario

ROOT = "/api/data/v9.2"
WO = "msdyn_workorder"
WO_TYPE = f"Microsoft.Dynamics.CRM.{WO}"
MANAGER = "manager-0001"
TECH = "technician-0001"  # org write and delete on work orders


def _action(set_name: str, name: str) -> str:
    return f"{ROOT}/{set_name}/Microsoft.Dynamics.CRM.{name}"


async def _get(api: Api, set_name: str, row_id: str, user: str = MANAGER) -> Any:
    resp = await api.call("GET", f"{ROOT}/{set_name}({row_id})", user)
    return await resp.json() if resp.status == 200 else resp.status


def _snapshot(api: Api, logical: str) -> tuple[dict[str, int], int]:
    table = api.state.store.table(logical)
    return {r.id: r.version for r in table}, len(table.log)


def _workorder_ids(api: Api, n: int) -> list[str]:
    return sorted(api.state.store.table(WO).rows)[:n]


async def test_create_multiple_returns_ids_in_input_order_and_the_rows_are_readable(api: Api) -> None:
    targets = [{"name": f"wo-{i}", "msdyn_duration": i, "@odata.type": WO_TYPE} for i in range(5)]
    resp = await api.call("POST", _action("msdyn_workorders", "CreateMultiple"), TECH, json={"Targets": targets})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    assert len(body["Ids"]) == 5
    for i, row_id in enumerate(body["Ids"]):
        row = await _get(api, "msdyn_workorders", row_id)
        assert (row["name"], row["msdyn_duration"]) == (f"wo-{i}", i)


async def test_create_multiple_uses_client_given_primary_ids(api: Api) -> None:
    given = str(uuid.uuid4())
    resp = await api.call("POST", _action("accounts", "CreateMultiple"), MANAGER,
                          json={"Targets": [{"name": "x", "accountid": given}]})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["Ids"] == [given]


async def test_update_multiple_changes_every_target(api: Api) -> None:
    ids = _workorder_ids(api, 3)
    targets = [{"msdyn_workorderid": i, "msdyn_duration": 100 + n, "@odata.type": WO_TYPE} for n, i in enumerate(ids)]
    resp = await api.call("POST", _action("msdyn_workorders", "UpdateMultiple"), TECH, json={"Targets": targets})
    assert resp.status == 204, await resp.text()
    assert [(await _get(api, "msdyn_workorders", i))["msdyn_duration"] for i in ids] == [100, 101, 102]


async def test_update_multiple_with_a_missing_row_is_404_and_changes_nothing(api: Api) -> None:
    ids = _workorder_ids(api, 2)
    before = _snapshot(api, WO)
    targets = [{"msdyn_workorderid": ids[0], "msdyn_duration": 1},
               {"msdyn_workorderid": str(uuid.uuid4()), "msdyn_duration": 2},
               {"msdyn_workorderid": ids[1], "msdyn_duration": 3}]
    resp = await api.call("POST", _action("msdyn_workorders", "UpdateMultiple"), TECH, json={"Targets": targets})
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "0x80040217"
    assert _snapshot(api, WO) == before


async def test_update_multiple_needs_the_primary_id_on_every_target(api: Api) -> None:
    resp = await api.call("POST", _action("accounts", "UpdateMultiple"), MANAGER, json={"Targets": [{"name": "x"}]})
    assert resp.status == 400
    assert "accountid" in (await resp.json())["error"]["message"]


async def test_upsert_multiple_creates_missing_rows_and_updates_existing_ones(api: Api) -> None:
    existing = _workorder_ids(api, 1)[0]
    new_by_ref, new_by_column = str(uuid.uuid4()), str(uuid.uuid4())
    targets = [
        {"@odata.id": f"msdyn_workorders({existing})", "msdyn_duration": 7, "@odata.type": WO_TYPE},
        {"@odata.id": f"msdyn_workorders({new_by_ref})", "name": "by ref", "@odata.type": WO_TYPE},
        {"msdyn_workorderid": new_by_column, "name": "by column"},
    ]
    resp = await api.call("POST", _action("msdyn_workorders", "UpsertMultiple"), TECH, json={"Targets": targets})
    assert resp.status == 204, await resp.text()
    assert (await _get(api, "msdyn_workorders", existing))["msdyn_duration"] == 7
    assert (await _get(api, "msdyn_workorders", new_by_ref))["name"] == "by ref"
    assert (await _get(api, "msdyn_workorders", new_by_column))["name"] == "by column"


@pytest.mark.parametrize("ref", ["msdyn_workorders(msdyn_name='A-1')", "accounts(00000000-0000-0000-0000-000000000001)"])
async def test_upsert_multiple_refuses_alternate_keys_and_other_tables(api: Api, ref: str) -> None:
    resp = await api.call("POST", _action("msdyn_workorders", "UpsertMultiple"), TECH,
                          json={"Targets": [{"@odata.id": ref, "name": "x"}]})
    assert resp.status == 400


async def test_a_bulk_request_with_one_bad_target_changes_nothing(api: Api) -> None:
    ids = _workorder_ids(api, 2)
    before, writes = _snapshot(api, WO), api.state.counters.writes_applied
    targets = [{"@odata.id": f"msdyn_workorders({ids[0]})", "msdyn_duration": 1},
               {"name": "fresh"},
               {"@odata.id": f"msdyn_workorders({ids[1]})", "msdyn_priority": 99}]  # not an option value
    resp = await api.call("POST", _action("msdyn_workorders", "UpsertMultiple"), TECH, json={"Targets": targets})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "0x80044331"
    assert _snapshot(api, WO) == before
    assert api.state.counters.writes_applied == writes


async def test_create_multiple_without_the_privilege_is_403_and_creates_nothing(api: Api) -> None:
    user = api.state.store.users_by_name["technician-0001"]
    table = api.state.store.table("account")
    other = next(r.id for r in table if r.owner != user.index)
    before = _snapshot(api, "account")
    targets = [{"@odata.id": f"accounts({str(uuid.uuid4())})", "name": "mine"},
               {"@odata.id": f"accounts({other})", "name": "not mine"}]
    resp = await api.call("POST", _action("accounts", "UpsertMultiple"), user.name, json={"Targets": targets})
    assert resp.status == 403
    assert _snapshot(api, "account") == before


@pytest.mark.parametrize("body", [{}, {"Targets": []}, {"Targets": {"name": "x"}}, {"Targets": ["x"]}, [1]])
async def test_targets_must_be_a_non_empty_list_of_objects(api: Api, body: Any) -> None:
    resp = await api.call("POST", _action("accounts", "CreateMultiple"), MANAGER, json=body)
    assert resp.status == 400


async def test_a_target_typed_as_another_table_is_refused(api: Api) -> None:
    resp = await api.call("POST", _action("accounts", "CreateMultiple"), MANAGER,
                          json={"Targets": [{"name": "x", "@odata.type": WO_TYPE}]})
    assert resp.status == 400
    assert "@odata.type" in (await resp.json())["error"]["message"]


async def test_more_than_5000_targets_are_one_request_as_in_dataverse(api: Api) -> None:
    """Found with the SDK: records.create(table, [5,200 dicts]) sends one CreateMultiple, which a
    5,000-target cap refused. Dataverse has no fixed cap."""
    resp = await api.call("POST", _action("accounts", "CreateMultiple"), MANAGER,
                          json={"Targets": [{"name": f"bulk {i}"} for i in range(5200)]})
    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["Ids"]) == 5200 and len(api.state.store.table("account")) == 20 + 5200


async def test_a_bulk_body_over_the_size_limit_is_413_and_writes_nothing(
        aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> None:
    api = Api(await aiohttp_client(make_server(small_scenario(server={"max_body_mb": 0.01}))))
    resp = await api.call("POST", _action("accounts", "CreateMultiple"), MANAGER,
                          json={"Targets": [{"name": f"bulk {i}"} for i in range(1000)]})  # ~20 KB > 10 KiB
    assert resp.status == 413
    assert len(api.state.store.table("account")) == 20


def _bulk_delete_body(logical: str, id_column: str, ids: list[str]) -> dict[str, Any]:
    """BulkDelete exactly as the SDK's records.delete(table, [ids]) sends it."""
    return {
        "JobName": f"Bulk delete {logical} records @ 2025-01-01T00:00:00Z", "SendEmailNotification": False,
        "ToRecipients": [], "CCRecipients": [], "RecurrencePattern": "", "StartDateTime": "2025-01-01T00:00:00Z",
        "QuerySet": [{
            "@odata.type": "Microsoft.Dynamics.CRM.QueryExpression", "EntityName": logical,
            "ColumnSet": {"@odata.type": "Microsoft.Dynamics.CRM.ColumnSet", "AllColumns": False, "Columns": []},
            "Criteria": {"@odata.type": "Microsoft.Dynamics.CRM.FilterExpression", "FilterOperator": "And",
                         "Conditions": [{"@odata.type": "Microsoft.Dynamics.CRM.ConditionExpression",
                                         "AttributeName": id_column, "Operator": "In",
                                         "Values": [{"Value": i, "Type": "System.Guid"} for i in ids]}]},
        }],
    }


async def test_bulk_delete_removes_the_listed_rows_and_answers_a_job_id(api: Api) -> None:
    ids = _workorder_ids(api, 3)
    table = api.state.store.table(WO)
    log_len = len(table.log)
    resp = await api.call("POST", f"{ROOT}/BulkDelete", TECH, json=_bulk_delete_body(WO, "msdyn_workorderid", ids))
    assert resp.status == 200, await resp.text()
    assert uuid.UUID((await resp.json())["JobId"])
    assert not set(ids) & set(table.rows)
    assert {e.row_id for e in table.log[log_len:]} >= set(ids)  # tombstones for delta readers


async def test_bulk_delete_skips_rows_the_user_may_not_delete(api: Api) -> None:
    user = api.state.store.users_by_name["technician-0001"]
    table = api.state.store.table("account")
    mine = next(r.id for r in table if r.owner == user.index)
    other = next(r.id for r in table if r.owner != user.index)
    missing = str(uuid.uuid4())
    resp = await api.call("POST", f"{ROOT}/BulkDelete", user.name,
                          json=_bulk_delete_body("account", "accountid", [other, mine, missing]))
    assert resp.status == 200, await resp.text()
    assert mine not in table.rows and other in table.rows


@pytest.mark.parametrize(("logical", "column"), [("nosuchtable", "nosuchtableid"), ("account", "name")])
async def test_bulk_delete_of_an_unknown_table_or_column_is_400(api: Api, logical: str, column: str) -> None:
    resp = await api.call("POST", f"{ROOT}/BulkDelete", MANAGER, json=_bulk_delete_body(logical, column, [str(uuid.uuid4())]))
    assert resp.status == 400
    assert len(api.state.store.table("account")) == 20


async def test_an_undone_bulk_action_gives_its_row_versions_back(api: Api) -> None:
    """All or nothing includes the version counter: the next write gets the version the undone one had."""
    ids = _workorder_ids(api, 2)
    version = api.state.store.version
    targets = [{"msdyn_workorderid": ids[0], "msdyn_duration": 1}, {"msdyn_workorderid": ids[1], "msdyn_duration": 2},
               {"msdyn_workorderid": str(uuid.uuid4()), "msdyn_duration": 3}]  # missing: 404 for the whole request
    resp = await api.call("POST", _action("msdyn_workorders", "UpdateMultiple"), TECH, json={"Targets": targets})
    assert resp.status == 404 and api.state.store.version == version
    ok = await api.call("PATCH", f"{ROOT}/msdyn_workorders({ids[0]})", TECH, json={"msdyn_duration": 4})
    assert ok.headers["ETag"] == f'W/"{version + 1}"'
