"""Alternate keys, as the SDK's records.upsert and Dataverse use them: rows by key in GET / PATCH
(upsert) / DELETE, composite keys, quoted values, UpsertMultiple with `@odata.id` key references,
EntityDefinitions(...)/Keys, and Dataverse's errors (unknown key, duplicate key values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from simulator.scenario import ScenarioError, parse_scenario
from tests.conftest import SMALL, Api, small_scenario

ACCOUNTS = "/api/data/v9.2/accounts"
MANAGER = "manager-0001"  # org-wide privileges on accounts


def _keyed() -> Any:
    tables = [dict(t) for t in SMALL["tables"]]
    tables[0] = {**tables[0], "columns": [
        *tables[0]["columns"],
        {"name": "accountnumber", "type": "text", "max_length": 20},
        {"name": "region", "type": "text", "max_length": 20, "faker": "country_code"},
        {"name": "branch", "type": "integer", "min": 1, "max": 100},
    ], "keys": [{"name": "accountnumber_key", "columns": ["accountnumber"]},
                {"name": "region_branch_key", "columns": ["branch", "region"]}]}
    classes = [dict(c) for c in SMALL["user_classes"]]
    classes[1] = {**classes[1], "privileges": {"account": {"read": "org", "write": "org", "delete": "org"}}}
    return small_scenario(tables=tables, user_classes=classes)


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> Api:
    return Api(await aiohttp_client(make_server(_keyed())))


def _state(api: Api) -> dict[str, int]:
    """Every account row and its version (a refused or rolled-back write leaves them as they were)."""
    return {i: r.version for i, r in api.state.store.table("account").rows.items()}


async def test_seeded_rows_have_unique_key_values_and_a_row_is_read_by_its_key(api: Api) -> None:
    table = api.state.store.table("account")
    numbers = [r.values["accountnumber"] for r in table.rows.values()]
    assert len(set(numbers)) == len(numbers) == 20 and "ACC-000001" in numbers
    row = next(r for r in table.rows.values() if r.values["accountnumber"] == "ACC-000007")
    got = await api.call("GET", f"{ACCOUNTS}(accountnumber='ACC-000007')", MANAGER)
    assert got.status == 200 and (await got.json())["accountid"] == row.id
    composite = await api.call("GET", f"{ACCOUNTS}(region='{row.values['region']}',branch={row.values['branch']})",
                               MANAGER)
    if len([r for r in table.rows.values() if (r.values["region"], r.values["branch"]) ==
            (row.values["region"], row.values["branch"])]) == 1:
        assert composite.status == 200 and (await composite.json())["accountid"] == row.id
    missing = await api.call("GET", f"{ACCOUNTS}(accountnumber='NOPE-1')", MANAGER)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "0x80040217"


async def test_an_upsert_by_key_creates_the_row_then_updates_it(api: Api) -> None:
    table = api.state.store.table("account")
    created = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='A-1')", MANAGER, json={"name": "Contoso"})
    assert created.status == 204
    assert created.headers["OData-EntityId"].endswith("accounts(accountnumber='A-1')")  # the key, not a GUID
    (row_id,) = [i for i, r in table.rows.items() if r.values.get("accountnumber") == "A-1"]
    again = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='A-1')", MANAGER, json={"name": "Contoso Ltd"})
    assert again.status == 204 and len(table) == 21 and table.rows[row_id].values["name"] == "Contoso Ltd"
    exists = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='A-1')", MANAGER, json={"name": "x"},
                            headers={"If-None-Match": "*"})
    assert exists.status == 412  # create only, and the row exists
    before = _state(api)
    absent = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='A-2')", MANAGER, json={"name": "y"},
                            headers={"If-Match": "*"})
    assert absent.status == 404 and _state(api) == before  # update only, and no row has the key
    gone = await api.call("DELETE", f"{ACCOUNTS}(accountnumber='A-1')", MANAGER)
    assert gone.status == 204 and row_id not in table.rows
    assert (await api.call("DELETE", f"{ACCOUNTS}(accountnumber='A-1')", MANAGER)).status == 404


async def test_quotes_in_key_values_are_doubled_and_composite_keys_take_any_order(api: Api) -> None:
    made = await api.call("PATCH", f"{ACCOUNTS}(region='O''Hare',branch=7)", MANAGER, json={"name": "airport"})
    assert made.status == 204
    row = next(r for r in api.state.store.table("account").rows.values() if r.values.get("region") == "O'Hare")
    assert row.values["branch"] == 7
    got = await api.call("GET", f"{ACCOUNTS}(branch=7,region='O''Hare')", MANAGER)
    assert got.status == 200 and (await got.json())["accountid"] == row.id


@pytest.mark.parametrize(("segment", "words"), [
    ("name='x'", "neither a GUID nor an alternate key"),        # not a key of the table
    ("accountnumber=12", "is text; quote its value"),          # a text key unquoted
    ("region='x',branch='7'", "is a number; do not quote it"),  # a number quoted
    ("accountnumber='x", "unterminated string"),
    ("accountnumber", "name=value pairs"),
    ("branch=7", "neither a GUID nor an alternate key"),        # half of a composite key
])
async def test_a_malformed_or_unknown_key_is_400_and_changes_nothing(api: Api, segment: str, words: str) -> None:
    before = _state(api)
    for method in ("GET", "PATCH", "DELETE"):
        resp = await api.call(method, f"{ACCOUNTS}({segment})", MANAGER, json={"name": "z"} if method == "PATCH" else None)
        body = await resp.json()
        assert resp.status == 400 and words in body["error"]["message"], (method, body)
    assert _state(api) == before


async def test_duplicate_key_values_are_412_and_nothing_is_written(api: Api) -> None:
    before = _state(api)
    dup = await api.call("POST", ACCOUNTS, MANAGER, json={"name": "dup", "accountnumber": "ACC-000003"})
    assert dup.status == 412
    body = await dup.json()
    assert body["error"]["code"] == "0x80060892" and "accountnumber_key" in body["error"]["message"]
    assert _state(api) == before
    row = next(r for r in api.state.store.table("account").rows.values() if r.values["accountnumber"] == "ACC-000004")
    moved = await api.call("PATCH", f"{ACCOUNTS}({row.id})", MANAGER, json={"accountnumber": "ACC-000003"})
    assert moved.status == 412 and _state(api) == before


async def test_text_key_values_match_case_insensitively_as_dataverses_collation_does(api: Api) -> None:
    table = api.state.store.table("account")
    row = next(r for r in table.rows.values() if r.values["accountnumber"] == "ACC-000007")
    got = await api.call("GET", f"{ACCOUNTS}(accountnumber='acc-000007')", MANAGER)
    assert got.status == 200 and (await got.json())["accountid"] == row.id
    before = _state(api)
    dup = await api.call("POST", ACCOUNTS, MANAGER, json={"name": "dup", "accountnumber": "acc-000007"})
    assert dup.status == 412 and (await dup.json())["error"]["code"] == "0x80060892" and _state(api) == before
    upsert = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='Acc-000007')", MANAGER, json={"name": "same row"})
    assert upsert.status == 204 and "Location" not in upsert.headers and len(table) == 20
    assert table.rows[row.id].values["name"] == "same row"
    own_case = await api.call("PATCH", f"{ACCOUNTS}({row.id})", MANAGER, json={"accountnumber": "acc-000007"})
    assert own_case.status == 204  # a row may change the case of its own key


async def test_the_key_in_a_created_rows_entity_id_is_percent_encoded(api: Api) -> None:
    """A line break in a key used to reach the OData-EntityId header: aiohttp refused it after the row
    was written and the connection was dropped."""
    made = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='a%0D%0Ab%20%C3%A9')", MANAGER, json={"name": "x"})
    assert made.status == 204
    assert made.headers["OData-EntityId"].endswith("/accounts(accountnumber='a%0D%0Ab%20%C3%A9')")


async def test_an_upsert_by_key_takes_the_bodys_primary_id_for_the_row_it_creates(api: Api) -> None:
    table = api.state.store.table("account")
    new = "00000000-0000-4000-8000-00000000c0de"
    made = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='C-1')", MANAGER, json={"accountid": new, "name": "c"})
    assert made.status == 204 and table.rows[new].values["accountnumber"] == "C-1"
    before = _state(api)
    taken = await api.call("PATCH", f"{ACCOUNTS}(accountnumber='C-2')", MANAGER, json={"accountid": new, "name": "d"})
    assert taken.status == 412 and (await taken.json())["error"]["code"] == "0x80040237" and _state(api) == before


async def test_upsert_multiple_names_rows_by_key_and_creates_the_missing_ones(api: Api) -> None:
    table = api.state.store.table("account")
    targets = [
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "@odata.id": "accounts(accountnumber='ACC-000002')",
         "name": "renamed"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "@odata.id": "accounts(accountnumber='NEW-1')",
         "name": "new one"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "@odata.id": "accounts(accountnumber='NEW-1')",
         "name": "new one, again"},  # the row the target before made
    ]
    resp = await api.call("POST", f"{ACCOUNTS}/Microsoft.Dynamics.CRM.UpsertMultiple", MANAGER,
                          json={"Targets": targets})
    assert resp.status == 204, await resp.text()
    by_number = {r.values["accountnumber"]: r for r in table.rows.values()}
    assert by_number["ACC-000002"].values["name"] == "renamed"
    assert by_number["NEW-1"].values["name"] == "new one, again" and len(table) == 21
    before = _state(api)
    clash = [{"@odata.id": "accounts(accountnumber='NEW-2')", "name": "a"},
             {"@odata.id": "accounts(accountnumber='ACC-000006')", "accountnumber": "ACC-000005"}]
    refused = await api.call("POST", f"{ACCOUNTS}/Microsoft.Dynamics.CRM.UpsertMultiple", MANAGER,
                             json={"Targets": clash})
    assert refused.status == 412 and _state(api) == before  # all or nothing


async def test_entity_definitions_list_the_keys(api: Api) -> None:
    resp = await api.call("GET", "/api/data/v9.2/EntityDefinitions(LogicalName='account')/Keys", MANAGER)
    body = await resp.json()
    assert resp.status == 200
    assert [(k["LogicalName"], k["KeyAttributes"]) for k in body["value"]] == [
        ("accountnumber_key", ["accountnumber"]), ("region_branch_key", ["branch", "region"])]
    expanded = await api.call("GET", "/api/data/v9.2/EntityDefinitions(LogicalName='account')?$expand=Keys", MANAGER)
    assert [k["LogicalName"] for k in (await expanded.json())["Keys"]] == ["accountnumber_key", "region_branch_key"]


def test_a_key_on_a_column_the_table_lacks_is_a_scenario_error_naming_both() -> None:
    tables = [dict(t) for t in SMALL["tables"]]
    tables[0] = {**tables[0], "keys": [{"name": "k", "columns": ["accountnumber"]}]}
    with pytest.raises(ScenarioError, match="accountnumber"):
        parse_scenario({**SMALL, "tables": tables})


async def test_batch_parts_name_rows_by_key(api: Api) -> None:
    from tests.test_server_batch import sdk_batch, url

    body = sdk_batch("batch_k", [
        ("PATCH", url(api, "accounts(accountnumber='B-1')"), {"name": "made in a batch"}, None, None),
        ("GET", url(api, "accounts(accountnumber='ACC-000009')"), None, None, None),
    ])
    resp = await api.call("POST", "/api/data/v9.2/$batch", MANAGER, data=body,
                          headers={"Content-Type": "multipart/mixed; boundary=batch_k"})
    text = await resp.text()
    assert resp.status == 200 and text.count("HTTP/1.1 204") == 1 and text.count("HTTP/1.1 200") == 1, text
    assert any(r.values.get("accountnumber") == "B-1" for r in api.state.store.table("account").rows.values())
