"""$expand on plain reads: lookups with a nested $select, their collection-valued partners, limits, errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from simulator.server.expand import MAX_EXPANDS, ONLY_SELECT_AND_FILTER, REF_ONLY_ON_LOOKUPS, split_top_level
from simulator.server.privileges import change_privilege
from simulator.server.store import Row
from tests.conftest import Api
from tests.test_openapi import SPEC, validate
from tests.test_server_query import get, get_all

ROOT = "/api/data/v9.2"
WO = f"{ROOT}/msdyn_workorders"
NOTES = "msdyn_workorder_annotation_objectid"  # the collection-valued side of annotation.objectid
USER = "manager-0001"
BAD_PAYLOAD, REFUSED = "0x80048d19", "0x80060888"


def rows_of(api: Api, table: str) -> dict[str, Row]:
    return api.state.store.table(table).rows


async def error_of(api: Api, url: str, user: str = USER, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """(code, message) of a 400 answer in Dataverse's error shape."""
    resp = await api.call("GET", url, user, headers=headers)
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]["code"], body["error"]["message"]


def account_of(api: Api, row: Row, select: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """The expected expansion of a work order's account: etag, primary id, the nested $select."""
    account = rows_of(api, "account")[row.values["_msdyn_account_value"]]
    return {"@odata.etag": f'W/"{account.version}"', "accountid": account.id,
            **{c: account.values.get(c) for c in select}}


def notes_of(api: Api, work_order_id: str) -> list[Row]:
    """The annotations that look a work order up, in id order."""
    return sorted((r for r in rows_of(api, "annotation").values() if r.values["_objectid_value"] == work_order_id),
                  key=lambda r: r.id)


# --- single-valued (lookups) -----------------------------------------------------------------------
async def test_a_lookup_expands_to_the_related_row_projected_to_its_nested_select(api: Api) -> None:
    body = await get(api, f"{WO}?$select=name,msdyn_duration&$expand=msdyn_account($select=name,revenue)")
    assert body["@odata.context"].endswith("$metadata#msdyn_workorders(name,msdyn_duration,msdyn_account(name,revenue))")
    work_orders = rows_of(api, "msdyn_workorder")
    assert len(body["value"]) == 60
    for wire in body["value"]:
        row = work_orders[wire["msdyn_workorderid"]]
        assert set(wire) == {"@odata.etag", "msdyn_workorderid", "name", "msdyn_duration", "msdyn_account"}
        assert wire["msdyn_account"] == account_of(api, row, ("name", "revenue"))


async def test_without_a_nested_select_the_whole_related_row_comes(api: Api) -> None:
    body = await get(api, f"{WO}?$top=3&$expand=msdyn_account")
    assert body["@odata.context"].endswith("#msdyn_workorders(msdyn_account())")
    accounts = api.state.store.table("account")
    for wire in body["value"]:
        assert wire["msdyn_account"] == accounts.render(accounts.rows[wire["_msdyn_account_value"]])
        assert "msdyn_priority" in wire  # the parent row is whole too


async def test_an_empty_lookup_expands_to_null(api: Api) -> None:
    resp = await api.call("POST", WO, USER, json={"name": "No account", "msdyn_duration": 5})
    assert resp.status == 204, await resp.text()
    new_id = resp.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    body = await get(api, f"{WO}?$filter=msdyn_workorderid eq {new_id}&$select=name&$expand=msdyn_account($select=name)")
    assert body["value"] == [{"@odata.etag": body["value"][0]["@odata.etag"], "msdyn_workorderid": new_id,
                              "name": "No account", "msdyn_account": None}]


async def test_a_related_row_the_user_may_not_read_expands_to_null(api: Api) -> None:
    state = api.state
    manager = state.store.users_by_name[USER]
    change_privilege(state, manager, "account", {"read": "user"})
    rows = await get_all(api, f"{WO}?$select=name&$expand=msdyn_account($select=name)", {"Prefer": "odata.maxpagesize=9"})
    accounts, work_orders = rows_of(api, "account"), rows_of(api, "msdyn_workorder")
    readable = {i for i, a in accounts.items() if a.owner == manager.index}
    seen = set()
    for wire in rows:
        row = work_orders[wire["msdyn_workorderid"]]
        mine = row.values["_msdyn_account_value"] in readable
        assert wire["msdyn_account"] == (account_of(api, row) if mine else None)
        seen.add(mine)
    assert seen == {True, False}  # both cases occur on the seeded data
    change_privilege(state, manager, "account", {"read": "none"})
    body = await get(api, f"{WO}?$top=5&$expand=msdyn_account($select=name)")
    assert [w["msdyn_account"] for w in body["value"]] == [None] * 5


async def test_one_row_with_expand(api: Api) -> None:
    row = next(iter(rows_of(api, "msdyn_workorder").values()))
    url = f"{WO}({row.id})?$select=name&$expand=msdyn_account($select=name,revenue),{NOTES}($select=name)"
    resp = await api.call("GET", url, USER)
    assert resp.status == 200 and resp.headers["ETag"] == f'W/"{row.version}"'
    body = await resp.json()
    assert body["@odata.context"].endswith(
        f"#msdyn_workorders(name,msdyn_account(name,revenue),{NOTES}(name))/$entity")
    assert body["msdyn_workorderid"] == row.id and body["name"] == row.values["name"]
    assert body["msdyn_account"] == account_of(api, row, ("name", "revenue"))
    assert [n["annotationid"] for n in body[NOTES]] == [n.id for n in notes_of(api, row.id)]


async def test_one_row_with_expand_is_never_304(api: Api) -> None:
    row = next(iter(rows_of(api, "msdyn_workorder").values()))
    etag = {"If-None-Match": f'W/"{row.version}"'}
    assert (await api.call("GET", f"{WO}({row.id})", USER, headers=etag)).status == 304
    resp = await api.call("GET", f"{WO}({row.id})?$expand=msdyn_account($select=name)", USER, headers=etag)
    assert resp.status == 200 and (await resp.json())["msdyn_account"] == account_of(api, row)


async def test_a_lookup_expanded_as_a_reference(api: Api) -> None:
    body = await get(api, f"{ROOT}/annotations?$select=name&$top=3&$expand=objectid/$ref")
    assert body["@odata.context"].endswith("#annotations(name,objectid,objectid/$ref())")
    for wire in body["value"]:
        parent = wire["_objectid_value"]
        link = wire["objectid"]["@odata.id"]
        assert set(wire["objectid"]) == {"@odata.id"} and link.startswith("http") and link.endswith(f"{WO}({parent})")


async def test_nested_rows_carry_the_annotations_asked_for(api: Api) -> None:
    prefer = {"Prefer": 'odata.include-annotations="*"'}
    body = await get(api, f"{ROOT}/annotations?$top=2&$select=name&$expand=objectid($select=msdyn_priority)", prefer)
    labels = {1: "Low", 2: "Normal", 3: "High"}
    for wire in body["value"]:
        nested = wire["objectid"]
        assert nested["msdyn_priority@OData.Community.Display.V1.FormattedValue"] == labels[nested["msdyn_priority"]]


# --- collection-valued -----------------------------------------------------------------------------
async def test_a_collection_valued_property_lists_the_rows_looking_this_one_up(api: Api) -> None:
    rows = await get_all(api, f"{WO}?$select=name&$expand={NOTES}($select=name)", {"Prefer": "odata.maxpagesize=7"})
    assert len(rows) == 60
    total = 0
    for wire in rows:
        want = notes_of(api, wire["msdyn_workorderid"])
        assert wire[NOTES] == [{"@odata.etag": f'W/"{n.version}"', "annotationid": n.id, "name": n.values["name"],
                                "_objectid_value": wire["msdyn_workorderid"]} for n in want]
        total += len(want)
    assert total == 80


async def test_nested_filter_orderby_and_top_apply_to_the_collection(api: Api) -> None:
    parent = max(rows_of(api, "msdyn_workorder"), key=lambda i: len(notes_of(api, i)))
    notes = notes_of(api, parent)
    assert len(notes) >= 3
    pivot = sorted(n.version for n in notes)[1]
    nested = f"$select=name;$filter=versionnumber ge {pivot};$orderby=name desc;$top=2"
    body = await get(api, f"{WO}({parent})?$select=name&$expand={NOTES}({quote(nested)})")
    by_id = sorted((n for n in notes if n.version >= pivot), key=lambda n: n.id)  # ties: ascending id
    want = sorted(by_id, key=lambda n: n.values["name"].lower(), reverse=True)[:2]
    assert [n["annotationid"] for n in body[NOTES]] == [n.id for n in want]


async def test_the_collection_next_link_answers_the_same_rows(api: Api) -> None:
    parent = max(rows_of(api, "msdyn_workorder"), key=lambda i: len(notes_of(api, i)))
    body = await get(api, f"{WO}({parent})?$expand={NOTES}($select=name;$orderby=name;$top=2)")
    link = body[f"{NOTES}@odata.nextLink"]
    assert link.startswith("http://") and f"{ROOT}/annotations?" in link
    again = await get(api, link)
    assert [r["annotationid"] for r in again["value"]] == [r["annotationid"] for r in body[NOTES]]


async def test_children_the_user_may_not_read_are_left_out(api: Api) -> None:
    change_privilege(api.state, api.state.store.users_by_name[USER], "annotation", {"read": "none"})
    body = await get(api, f"{WO}?$top=4&$expand={NOTES}($select=name)")
    assert [w[NOTES] for w in body["value"]] == [[]] * 4


async def test_an_account_lists_its_work_orders(api: Api) -> None:
    body = await get(api, f"{ROOT}/accounts?$select=name&$expand=account_msdyn_workorder_msdyn_account($select=name)")
    got = {w["accountid"]: {r["msdyn_workorderid"] for r in w["account_msdyn_workorder_msdyn_account"]}
           for w in body["value"]}
    want: dict[str, set[str]] = {i: set() for i in rows_of(api, "account")}
    for row in rows_of(api, "msdyn_workorder").values():
        want[row.values["_msdyn_account_value"]].add(row.id)
    assert got == want


# --- with the other query options ------------------------------------------------------------------
async def test_paging_filter_orderby_top_and_count_keep_working_with_expand(api: Api) -> None:
    query = "$select=name,msdyn_duration&$filter=msdyn_duration ge 100&$orderby=msdyn_duration desc&$top=25&$count=true"
    prefer = {"Prefer": "odata.maxpagesize=7"}
    plain = await get_all(api, f"{WO}?{query}", prefer)
    first = await get(api, f"{WO}?{query}&$expand=msdyn_account($select=name),{NOTES}($select=name)", prefer)
    assert "$expand=" in first["@odata.nextLink"] and len(first["value"]) == 7
    assert first["@odata.count"] == sum(1 for r in rows_of(api, "msdyn_workorder").values()
                                        if r.values["msdyn_duration"] >= 100)
    expanded = first["value"] + await get_all(api, first["@odata.nextLink"], prefer)
    assert [w["msdyn_workorderid"] for w in expanded] == [w["msdyn_workorderid"] for w in plain]
    assert len(expanded) == 25
    work_orders = rows_of(api, "msdyn_workorder")
    for wire in expanded:
        assert wire["msdyn_account"] == account_of(api, work_orders[wire["msdyn_workorderid"]])
        assert [n["annotationid"] for n in wire[NOTES]] == [n.id for n in notes_of(api, wire["msdyn_workorderid"])]


async def test_expand_inside_a_batch(api: Api) -> None:
    row = next(iter(rows_of(api, "msdyn_workorder").values()))
    boundary = "batch_x"
    part = (f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"GET {WO}({row.id})?$select=name&$expand=msdyn_account($select=name) HTTP/1.1\r\n"
            f"Accept: application/json\r\n\r\n\r\n--{boundary}--\r\n")
    resp = await api.call("POST", f"{ROOT}/$batch", USER, data=part.encode(),
                          headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
    text = await resp.text()
    assert resp.status == 200 and '"msdyn_account":{' in text and account_of(api, row)["accountid"] in text


# --- limits and errors -----------------------------------------------------------------------------
def many(n: int) -> str:
    return ",".join(["msdyn_account"] * n)


@pytest.mark.parametrize("expand, code, message", [
    ("nope", BAD_PAYLOAD, "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.msdyn_workorder'."),
    ("MSDYN_ACCOUNT", BAD_PAYLOAD, "Could not find a property named 'MSDYN_ACCOUNT' on type"),  # case-sensitive
    ("name", BAD_PAYLOAD, "Property 'name' on type 'Microsoft.Dynamics.CRM.msdyn_workorder' is not a navigation "
     "property or complex property. Only navigation properties can be expanded."),
    ("ownerid", BAD_PAYLOAD, "is not a navigation property"),
    ("msdyn_account($top=1)", REFUSED, ONLY_SELECT_AND_FILTER),
    ("msdyn_account($select=name;$orderby=name)", REFUSED, ONLY_SELECT_AND_FILTER),
    ("msdyn_account($filter=name eq 'x')", REFUSED, "$filter in $expand of the lookup 'msdyn_account'"),
    ("msdyn_account($expand=x)", REFUSED, "Nested $expand"),
    (f"{NOTES}($expand=objectid)", REFUSED, "Nested $expand"),
    (f"{NOTES}($top=2;$expand=objectid)", REFUSED, ONLY_SELECT_AND_FILTER),  # Dataverse's, before syncsim's refusal
    (f"{NOTES}($expand=objectid;$orderby=name)", REFUSED, ONLY_SELECT_AND_FILTER),
    (f"{NOTES}($skip=1)", REFUSED, "The query option '$skip' is not supported in $expand."),
    (f"{NOTES}($count=true)", REFUSED, "The query option '$count' is not supported in $expand."),
    ("msdyn_account($levels=2)", REFUSED, "The query option '$levels' is not supported in $expand."),
    ("msdyn_account($search=x)", REFUSED, "The query option '$search' is not supported in $expand."),
    ("msdyn_account($apply=x)", BAD_PAYLOAD, "The query option '$apply' is not valid"),
    ("msdyn_account(select=name)", BAD_PAYLOAD, "The query option 'select' is not valid"),
    ("msdyn_account($select=name;$select=name)", BAD_PAYLOAD, "more than once"),
    ("msdyn_account($select)", BAD_PAYLOAD, "Syntax error"),
    ("msdyn_account($select=nope)", BAD_PAYLOAD,
     "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.account'."),
    (f"{NOTES}($select=msdyn_priority)", BAD_PAYLOAD, "on type 'Microsoft.Dynamics.CRM.annotation'"),
    (f"{NOTES}($filter=name eq)", BAD_PAYLOAD, ""),
    (f"{NOTES}($filter=nope eq 1)", BAD_PAYLOAD, "Could not find a property named 'nope'"),
    (f"{NOTES}($orderby=name sideways)", BAD_PAYLOAD, "Syntax error in $orderby"),
    (f"{NOTES}($top=-1)", BAD_PAYLOAD, "Invalid value '-1' for $top"),
    (f"{NOTES}/$ref", REFUSED, REF_ONLY_ON_LOOKUPS),
    ("msdyn_account/$ref($select=name)", REFUSED, "Query options are not supported with $ref"),
    ("msdyn_account($select=name", BAD_PAYLOAD, "unclosed parenthesis"),
    ("msdyn_account)", BAD_PAYLOAD, "unbalanced ')'"),
    ("msdyn_account($filter='x)", BAD_PAYLOAD, "unclosed string"),
    ("msdyn_account,,", BAD_PAYLOAD, "Syntax error in $expand at ''"),
    ("*", BAD_PAYLOAD, "Syntax error in $expand at '*'"),
    ("msdyn_account,msdyn_account", BAD_PAYLOAD, "'msdyn_account' is expanded more than once"),
    (many(MAX_EXPANDS + 1), REFUSED, f"The query has 16 $expand options; at most {MAX_EXPANDS} are allowed."),
])
async def test_bad_expands_are_400_with_dataverse_error_json(api: Api, expand: str, code: str, message: str) -> None:
    for url in (f"{WO}?$expand={quote(expand)}",
                f"{WO}({next(iter(rows_of(api, 'msdyn_workorder')))})?$expand={quote(expand)}"):
        got_code, got_message = await error_of(api, url)
        assert got_code == code and message in got_message, (url, got_code, got_message)


async def test_count_checks_expand_as_the_query_does_and_otherwise_ignores_it(api: Api) -> None:
    """OData: $expand does not change a count. A bad one is the same 400 on /$count as on the query."""
    plain = await api.call("GET", f"{WO}/$count", USER)
    expanded = await api.call("GET", f"{WO}/$count?$expand={quote(f'msdyn_account($select=name),{NOTES}')}", USER)
    assert (plain.status, expanded.status) == (200, 200) and await plain.text() == await expanded.text()
    for expand in ("nope", "name", f"{NOTES}($top=2;$expand=objectid)"):
        query_error = await error_of(api, f"{WO}?$expand={quote(expand)}")
        assert await error_of(api, f"{WO}/$count?$expand={quote(expand)}") == query_error


async def test_fifteen_expands_are_the_limit_not_an_error_of_their_own(api: Api) -> None:
    code, message = await error_of(api, f"{WO}?$expand={quote(many(MAX_EXPANDS))}")
    assert code == BAD_PAYLOAD and "expanded more than once" in message  # the count passed, the repeat did not


async def test_expand_with_change_tracking_stays_refused(api: Api) -> None:
    code, message = await error_of(api, f"{ROOT}/accounts?$expand=account_msdyn_workorder_msdyn_account",
                                   headers={"Prefer": "odata.track-changes"})
    assert code == REFUSED
    assert message == 'The "$expand" query parameter isn\'t supported when Change Tracking is enabled.'


async def test_an_unknown_row_is_404_before_its_expand_is_read(api: Api) -> None:
    resp = await api.call("GET", f"{WO}(00000000-0000-4000-8000-000000000000)?$expand=nope", USER)
    assert resp.status == 404


def test_splitting_respects_parentheses_and_quoted_strings() -> None:
    text = "a($filter=contains(name,'x,y;z'');(');$top=1),b"
    assert split_top_level(text, ",") == ["a($filter=contains(name,'x,y;z'');(');$top=1)", "b"]
    inner = split_top_level("$filter=contains(name,'x,y;z'');(');$top=1", ";")
    assert inner == ["$filter=contains(name,'x,y;z'');(')", "$top=1"]


# --- the OpenAPI description -----------------------------------------------------------------------
@pytest.mark.parametrize("template", ["/api/data/v9.2/{set}", "/api/data/v9.2/{set}({id})"])
def test_expand_is_a_documented_option_of_both_reads(template: str) -> None:
    params = [SPEC["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] for p in SPEC["paths"][template]["get"]
              ["parameters"]]
    assert "$expand" in {p["name"] for p in params if p["in"] == "query"}


async def test_expanded_answers_match_the_documented_schemas(api: Api) -> None:
    expand = f"msdyn_account($select=name),{NOTES}($select=name;$top=2)"
    page = await get(api, f"{WO}?$select=name&$expand={expand}", {"Prefer": "odata.maxpagesize=3"})
    validate("/components/schemas/EntityCollection", page, "expanded page")
    row = await get(api, f"{WO}({page['value'][0]['msdyn_workorderid']})?$select=name&$expand={expand}")
    validate("/components/schemas/RowEntity", row, "expanded row")
    refs = await get(api, f"{ROOT}/annotations?$top=2&$expand=objectid/$ref")
    validate("/components/schemas/EntityCollection", refs, "page of references")
