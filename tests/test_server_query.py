"""Plain collection queries: $filter, $select, $orderby, $top, $count, paging, annotations, /$count."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.clock import ManualClock
from simulator.server.handlers import count
from simulator.server.odata_filter import Field, compile_filter, parse_filter
from simulator.server.serve import start_server
from simulator.server.store import Row
from tests.conftest import Api, small_scenario

ROOT = "/api/data/v9.2"
WO = f"{ROOT}/msdyn_workorders"
USER = "manager-0001"


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> Api:
    app = make_server()
    if "count" not in app.router.named_resources():  # until app.py registers handlers/count.py
        app.router.add_routes(count.routes)
    return Api(await aiohttp_client(app))


def rows_of(api: Api, table: str) -> list[Row]:
    return list(api.state.store.table(table).rows.values())


async def get(api: Api, url: str, headers: dict[str, str] | None = None, user: str = USER) -> dict[str, Any]:
    resp = await api.call("GET", url, user, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def get_all(api: Api, url: str, headers: dict[str, str] | None = None, user: str = USER) -> list[dict[str, Any]]:
    """Every row of a query, following @odata.nextLink verbatim."""
    out: list[dict[str, Any]] = []
    while url:
        body = await get(api, url, headers, user)
        out.extend(body["value"])
        url = body.get("@odata.nextLink", "")
    return out


async def ids_matching(api: Api, text: str, set_name: str = "msdyn_workorders") -> set[str]:
    key = {"msdyn_workorders": "msdyn_workorderid", "accounts": "accountid", "annotations": "annotationid"}[set_name]
    return {r[key] for r in await get_all(api, f"{ROOT}/{set_name}?$filter={quote(text)}")}


def expect(api: Api, predicate: Callable[[dict[str, Any]], bool], table: str = "msdyn_workorder") -> set[str]:
    return {r.id for r in rows_of(api, table) if predicate(r.values)}


async def error_of(api: Api, url: str, status: int = 400) -> str:
    resp = await api.call("GET", url, USER)
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"].startswith("0x")
    return str(body["error"]["message"])


# --- $filter ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("op, fn", [("eq", int.__eq__), ("ne", int.__ne__), ("gt", int.__gt__),
                                    ("ge", int.__ge__), ("lt", int.__lt__), ("le", int.__le__)])
async def test_each_comparison_operator_agrees_with_python(api: Api, op: str, fn: Callable[[int, int], bool]) -> None:
    pivot = sorted(r.values["msdyn_duration"] for r in rows_of(api, "msdyn_workorder"))[30]
    got = await ids_matching(api, f"msdyn_duration {op} {pivot}")
    assert got == expect(api, lambda v: fn(v["msdyn_duration"], pivot))
    assert got


async def test_decimal_columns_compare_with_integer_and_float_literals(api: Api) -> None:
    assert await ids_matching(api, "revenue gt 500.5", "accounts") == expect(api, lambda v: v["revenue"] > 500.5, "account")
    assert await ids_matching(api, "revenue le 500", "accounts") == expect(api, lambda v: v["revenue"] <= 500, "account")


async def test_and_binds_tighter_than_or_and_parentheses_override_it(api: Api) -> None:
    def a(v: dict[str, Any]) -> bool:
        return bool(v["msdyn_priority"] == 1)

    def b(v: dict[str, Any]) -> bool:
        return bool(v["msdyn_duration"] > 240)

    def c(v: dict[str, Any]) -> bool:
        return bool(v["msdyn_priority"] == 3)

    text_a, text_b, text_c = "msdyn_priority eq 1", "msdyn_duration gt 240", "msdyn_priority eq 3"
    loose = await ids_matching(api, f"{text_a} or {text_b} and {text_c}")
    grouped = await ids_matching(api, f"({text_a} or {text_b}) and {text_c}")
    assert loose == expect(api, lambda v: a(v) or (b(v) and c(v)))
    assert grouped == expect(api, lambda v: (a(v) or b(v)) and c(v))
    assert loose != grouped


async def test_not_negates_the_expression_that_follows(api: Api) -> None:
    got = await ids_matching(api, "not (msdyn_priority eq 2 or msdyn_duration lt 100)")
    assert got == expect(api, lambda v: not (v["msdyn_priority"] == 2 or v["msdyn_duration"] < 100))


async def test_string_functions_are_case_insensitive(api: Api) -> None:
    name = rows_of(api, "account")[3].values["name"]
    for func, part in (("contains", name[2:6]), ("startswith", name[:4]), ("endswith", name[-4:])):
        literal = part.upper().replace("'", "''")
        got = await ids_matching(api, f"{func}(name, '{literal}')", "accounts")
        want = expect(api, lambda v, f=func, p=part: getattr(str, "__contains__" if f == "contains" else f)(
            v["name"].lower(), p.lower()), "account")
        assert got == want and got


async def test_string_equality_ignores_case_and_doubled_quotes_escape(api: Api) -> None:
    resp = await api.call("POST", f"{ROOT}/accounts", USER, json={"name": "O'Neil Fabrics"})
    assert resp.status == 204, await resp.text()
    got = await ids_matching(api, "name eq 'o''neil fabrics'", "accounts")
    assert got == expect(api, lambda v: v["name"] == "O'Neil Fabrics", "account") and len(got) == 1


async def test_in_and_not_in_split_the_rows(api: Api) -> None:
    inside = await ids_matching(api, 'Microsoft.Dynamics.CRM.In(PropertyName=\'msdyn_priority\',PropertyValues=["1","3"])')
    outside = await ids_matching(api, 'Microsoft.Dynamics.CRM.NotIn(PropertyName=\'msdyn_priority\',PropertyValues=["1","3"])')
    assert inside == expect(api, lambda v: v["msdyn_priority"] in (1, 3))
    assert outside == expect(api, lambda v: v["msdyn_priority"] == 2)


async def test_null_checks_find_rows_without_a_lookup(api: Api) -> None:
    resp = await api.call("POST", WO, USER, json={"name": "no account", "msdyn_priority": 1})
    assert resp.status == 204, await resp.text()
    empty = await ids_matching(api, "_msdyn_account_value eq null")
    assert empty == expect(api, lambda v: v.get("_msdyn_account_value") is None) and len(empty) == 1
    assert len(await ids_matching(api, "_msdyn_account_value ne null")) == 60


async def test_lookup_filter_by_bare_guid_matches_the_children(api: Api) -> None:
    table = api.state.store.table("msdyn_workorder")
    parent, children = next(iter(table.children["msdyn_account"].items()))
    assert await ids_matching(api, f"_msdyn_account_value eq {parent.upper()}") == children


async def test_datetime_and_date_literals_compare_with_datetime_columns(api: Api) -> None:
    stamp = sorted(r.values["modifiedon"] for r in rows_of(api, "msdyn_workorder"))[20]
    got = await ids_matching(api, f"modifiedon ge {stamp}")
    assert got == expect(api, lambda v: v["modifiedon"] >= stamp) and got
    day = stamp[:10]
    on_or_after = await ids_matching(api, f"modifiedon ge {day}")
    assert on_or_after == expect(api, lambda v: v["modifiedon"][:10] >= day)


async def test_primary_id_can_be_filtered_by_guid(api: Api) -> None:
    row = rows_of(api, "msdyn_workorder")[5]
    assert await ids_matching(api, f"msdyn_workorderid eq {row.id}") == {row.id}


async def test_unknown_column_is_a_400_naming_the_property(api: Api) -> None:
    message = await error_of(api, f"{WO}?$filter=" + quote("nosuch eq 1"))
    assert message == "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.msdyn_workorder'."


@pytest.mark.parametrize("text, position, token", [
    ("msdyn_duration eq eq 1", 18, "eq"), ("(msdyn_duration eq 1", 20, ""), ("msdyn_duration eq 1)", 19, ")"),
    ("msdyn_duration eq 'open", 18, "'open"), ("and msdyn_duration eq 1", 0, "and"),
])
async def test_syntax_errors_are_400_naming_position_and_token(api: Api, text: str, position: int, token: str) -> None:
    message = await error_of(api, f"{WO}?$filter=" + quote(text))
    assert f"position {position}" in message and (f"'{token}" in message if token else "end of expression" in message)


@pytest.mark.parametrize("url", [
    f"{WO}?$filter=" + quote("msdyn_duration eq 'x'"), f"{WO}?$filter=" + quote("tolower(name) eq 'x'"),
    f"{WO}?$filter=" + quote("(" * 100 + "msdyn_duration eq 1" + ")" * 100), f"{WO}?$filter=" + quote("msdyn_duration"),
    f"{WO}?$filter=" + quote("contains(msdyn_duration, 'x')"), f"{WO}?$skip=5", f"{WO}?$expand=nope",
    f"{WO}?$top=-1", f"{WO}?$orderby=" + quote("name sideways"), f"{WO}?$skiptoken=garbage", f"{WO}?$apply=x",
    f"{WO}?$skiptoken=" + quote('<cookie pagenumber="2" pagingcookie="%3Ccookie%20syncsim%3D%22AAAA%22%3E" />'),
    f"{WO}?$filter=" + quote('Microsoft.Dynamics.CRM.In(PropertyName=\'msdyn_duration\',PropertyValues=["a"])'),
])
async def test_bad_queries_are_400_with_dataverse_error_json(api: Api, url: str) -> None:
    await error_of(api, url)


@pytest.mark.parametrize("literal", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:30+00:45"])
async def test_a_date_time_literal_whose_utc_instant_leaves_the_calendar_is_400(api: Api, literal: str) -> None:
    """It used to be a 500 (OverflowError converting it to UTC), in comparisons, In lists and /$count."""
    message = await error_of(api, f"{WO}?$filter=" + quote(f"createdon gt {literal}"))
    assert f"invalid literal '{literal}'" in message
    await error_of(api, f"{WO}/$count?$filter=" + quote(f"modifiedon le {literal}"))
    await error_of(api, f"{WO}?$filter=" + quote(f"Microsoft.Dynamics.CRM.In(PropertyName='createdon',PropertyValues=['{literal}'])"))


async def test_a_skiptoken_whose_values_the_query_could_not_have_served_is_400(api: Api) -> None:
    """A forged cookie with a date-time outside the calendar (it used to be a 500) or a value of another type."""
    first = await get(api, f"{WO}?$orderby=createdon", {"Prefer": "odata.maxpagesize=5"})
    token = unquote(first["@odata.nextLink"].split("$skiptoken=", 1)[1])
    paging = token.split('pagingcookie="', 1)[1].split('"', 1)[0]
    data = unquote(paging).split('syncsim="', 1)[1].split('"', 1)[0]
    served, last_id, _ = orjson.loads(base64.urlsafe_b64decode(data))

    def with_values(values: list[Any]) -> str:
        forged = base64.urlsafe_b64encode(orjson.dumps([served, last_id, values])).decode()
        cookie = token.replace(paging, quote(unquote(paging).replace(data, forged), safe=""))
        return f"{WO}?$orderby=createdon&$skiptoken=" + quote(cookie, safe="")

    assert (await api.call("GET", with_values(["2024-01-01T00:00:00Z"]), USER)).status == 200
    for value in ("0001-01-01T00:00:00+01:00", {"a": 1}, "not a date"):
        await error_of(api, with_values([value]))


async def test_a_url_up_to_dataverses_32768_characters_is_read(api: Api) -> None:
    """aiohttp refuses request lines over 8,190 bytes unless told otherwise; Dataverse takes 32 KB URLs."""
    select = ",".join(["name"] * 5000)  # about 25,000 characters
    resp = await api.call("GET", f"{WO}?$top=1&$select={select}", USER)
    assert resp.status == 200 and len((await resp.json())["value"]) == 1


async def test_requests_aiohttps_parser_refuses_get_the_dataverse_error_body_from_the_real_runner() -> None:
    """`start_server` (syncsim serve, syncsim run, the fuzzer) answers them with the error JSON, not text/plain."""
    server = await start_server(small_scenario(), admin_key="admin", clock=ManualClock())
    try:
        host, port = server.runner.addresses[0][:2]
        for request in (f"GET {ROOT}/accounts?$select={'x' * 40_000} HTTP/1.1\r\nHost: h\r\n\r\n".encode(),
                        f"GET {ROOT}/accounts HTTP/1.1\r\nHost: h\r\nPrefer: {'x' * 9000}\r\n\r\n".encode(),
                        f"POST {ROOT}/accounts HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n{{}}".encode()):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            answer = await reader.read()  # the server closes the connection after such an answer
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"400" and b"OData-Version: 4.0" in head, head
            assert orjson.loads(body)["error"]["code"] == "0x80048d19"
    finally:
        await server.close()


async def test_skip_gives_dataverse_message(api: Api) -> None:
    assert await error_of(api, f"{WO}?$skip=1") == "Skip Clause is not supported in CRM"


# --- $orderby and paging ---------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["asc", "desc"])
async def test_orderby_pages_visit_every_row_once_in_order(api: Api, direction: str) -> None:
    url = f"{WO}?$select=msdyn_priority,msdyn_duration&$orderby=msdyn_priority {direction},msdyn_duration desc"
    rows = await get_all(api, url, {"Prefer": "odata.maxpagesize=5"})
    sign = -1 if direction == "desc" else 1
    want = sorted(rows_of(api, "msdyn_workorder"),
                  key=lambda r: (sign * r.values["msdyn_priority"], -r.values["msdyn_duration"], r.id))
    assert [r["msdyn_workorderid"] for r in rows] == [r.id for r in want]


async def test_pages_follow_absolute_next_links_carrying_the_query(api: Api) -> None:
    body = await get(api, f"{WO}?$select=name&$filter=msdyn_duration ge 0", {"Prefer": "odata.maxpagesize=5"})
    link = body["@odata.nextLink"]
    assert link.startswith("http://") and "/api/data/v9.2/msdyn_workorders?" in link
    assert "$select=name" in link and "$filter=" in link and "$skiptoken=%3Ccookie%20pagenumber=%222%22" in link
    assert len(body["value"]) == 5 and set(body["value"][0]) == {"@odata.etag", "msdyn_workorderid", "name"}


async def test_unordered_pages_come_in_primary_id_order(api: Api) -> None:
    rows = await get_all(api, f"{ROOT}/accounts", {"Prefer": "odata.maxpagesize=3"})
    assert [r["accountid"] for r in rows] == sorted(r.id for r in rows_of(api, "account"))


async def test_filtered_pages_visit_each_match_once(api: Api) -> None:
    rows = await get_all(api, f"{WO}?$filter=msdyn_priority eq 2", {"Prefer": "odata.maxpagesize=4"})
    ids = [r["msdyn_workorderid"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == expect(api, lambda v: v["msdyn_priority"] == 2)


async def test_top_caps_the_total_over_all_pages(api: Api) -> None:
    rows = await get_all(api, f"{WO}?$top=12&$orderby=msdyn_duration", {"Prefer": "odata.maxpagesize=5"})
    want = sorted(rows_of(api, "msdyn_workorder"), key=lambda r: (r.values["msdyn_duration"], r.id))[:12]
    assert [r["msdyn_workorderid"] for r in rows] == [r.id for r in want]
    single = await get(api, f"{WO}?$top=7")
    assert len(single["value"]) == 7 and "@odata.nextLink" not in single


async def test_a_row_written_between_pages_does_not_break_paging(api: Api) -> None:
    first = await get(api, f"{ROOT}/accounts", {"Prefer": "odata.maxpagesize=5"})
    last = rows_of(api, "account")[-1]
    resp = await api.call("PATCH", f"{ROOT}/accounts({last.id})", USER, json={"revenue": 1})
    assert resp.status == 204
    rest = await get_all(api, first["@odata.nextLink"], {"Prefer": "odata.maxpagesize=5"})
    seen = [r["accountid"] for r in first["value"] + rest]
    assert len(seen) == len(set(seen)) == 20


# --- counts, annotations, headers ------------------------------------------------------------------
async def test_count_true_adds_odata_count_and_total_annotations(api: Api) -> None:
    prefer = 'odata.maxpagesize=5,odata.include-annotations="Microsoft.Dynamics.CRM.totalrecordcount*"'
    body = await get(api, f"{WO}?$count=true&$filter=msdyn_priority eq 1", {"Prefer": prefer})
    want = len(expect(api, lambda v: v["msdyn_priority"] == 1))
    assert body["@odata.count"] == want == body["@Microsoft.Dynamics.CRM.totalrecordcount"]
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is False


async def test_count_path_answers_a_bare_number(api: Api) -> None:
    resp = await api.call("GET", f"{WO}/$count", USER)
    assert resp.status == 200 and resp.content_type == "text/plain" and await resp.text() == "60"
    resp = await api.call("GET", f"{WO}/$count?$filter=" + quote("msdyn_priority eq 3"), USER)
    assert int(await resp.text()) == len(expect(api, lambda v: v["msdyn_priority"] == 3))


async def test_count_path_with_a_delta_token_counts_changes(api: Api) -> None:
    resp = await api.call("GET", f"{ROOT}/accounts", USER, headers={"Prefer": "odata.track-changes"})
    link = (await resp.json())["@odata.deltaLink"]
    token = link.split("$deltatoken=")[1]
    row = rows_of(api, "account")[0]
    assert (await api.call("PATCH", f"{ROOT}/accounts({row.id})", USER, json={"revenue": 2})).status == 204
    resp = await api.call("GET", f"{ROOT}/accounts/$count?$deltatoken={token}", USER)
    assert await resp.text() == "1"


async def test_star_annotations_add_formatted_values_and_lookup_names(api: Api) -> None:
    body = await get(api, f"{WO}?$top=3", {"Prefer": 'odata.include-annotations="*"'})
    accounts = api.state.store.table("account").rows
    for row in body["value"]:
        label = {1: "Low", 2: "Normal", 3: "High"}[row["msdyn_priority"]]
        assert row["msdyn_priority@OData.Community.Display.V1.FormattedValue"] == label
        assert row["_msdyn_account_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
        assert row["_msdyn_account_value@OData.Community.Display.V1.FormattedValue"] == \
            accounts[row["_msdyn_account_value"]].values["name"]
        assert row["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"


async def test_annotation_list_with_wildcards_adds_only_matching_names(api: Api) -> None:
    resp = await api.call("GET", f"{WO}?$top=2", USER, headers={
        "Prefer": 'odata.maxpagesize=2,odata.include-annotations="OData.Community.Display.*"'})
    assert resp.headers["Preference-Applied"] == \
        'odata.maxpagesize=2,odata.include-annotations="OData.Community.Display.*"'
    row = (await resp.json())["value"][0]
    assert "msdyn_priority@OData.Community.Display.V1.FormattedValue" in row
    assert not any(k.endswith("lookuplogicalname") for k in row)


async def test_without_annotations_rows_carry_none(api: Api) -> None:
    body = await get(api, f"{WO}?$top=2")
    assert not any("@" in k and k != "@odata.etag" for row in body["value"] for k in row)


async def test_queries_return_only_rows_the_read_privilege_allows(api: Api) -> None:
    user = api.state.store.users_by_name["technician-0002"]
    resp = await api.client.post("/_syncsim/privileges", headers={"Authorization": "Bearer admin"},
                                 json={"user": user.name, "table": "msdyn_workorder", "read": "user"})
    assert resp.status == 200
    rows = await get_all(api, WO, {"Prefer": "odata.maxpagesize=4"}, user=user.name)
    assert {r["msdyn_workorderid"] for r in rows} == api.state.store.table("msdyn_workorder").by_owner[user.index]


async def test_served_rows_and_bytes_are_counted(api: Api) -> None:
    before = api.state.counters.rows_served, api.state.counters.bytes_served
    resp = await api.call("GET", f"{WO}?$top=4", USER)
    body = await resp.read()
    assert api.state.counters.rows_served - before[0] == 4
    assert api.state.counters.bytes_served - before[1] == len(body)


# --- the parser on its own -------------------------------------------------------------------------
COLUMNS = ("a", "b")


def _resolve(name: str) -> Field:
    return Field("integer", lambda row: row[name])

_PY = {"eq": lambda x, y: x == y, "ne": lambda x, y: x != y, "gt": lambda x, y: x > y,
       "ge": lambda x, y: x >= y, "lt": lambda x, y: x < y, "le": lambda x, y: x <= y}


def _evaluate(op: str, value: int | None, literal: int) -> bool:
    if value is None:
        return op == "ne"
    return bool(_PY[op](value, literal))


comparisons = st.builds(lambda c, op, n: (f"{c} {op} {n}", lambda row: _evaluate(op, row[c], n)),
                        st.sampled_from(COLUMNS), st.sampled_from(sorted(_PY)), st.integers(-5, 5))
expressions = st.recursive(comparisons, lambda inner: st.one_of(
    st.builds(lambda x, y: (f"({x[0]}) and ({y[0]})", lambda r: x[1](r) and y[1](r)), inner, inner),
    st.builds(lambda x, y: (f"{x[0]} or {y[0]}", lambda r: x[1](r) or y[1](r)), inner, inner),
    st.builds(lambda x: (f"not ({x[0]})", lambda r: not x[1](r)), inner),
), max_leaves=6)
rows = st.lists(st.fixed_dictionaries({c: st.one_of(st.none(), st.integers(-6, 6)) for c in COLUMNS}), max_size=8)


@settings(max_examples=50, deadline=None)
@given(expressions, rows)
def test_parsed_filters_agree_with_python_on_integer_columns(expr: tuple[str, Any], data: list[dict[str, Any]]) -> None:
    text, python = expr
    predicate = compile_filter(parse_filter(text), _resolve)
    assert [predicate(r) for r in data] == [python(r) for r in data]


def test_datetime_literals_parse_to_utc() -> None:
    node = parse_filter("d lt 2024-01-02T03:04:05+01:00")
    predicate = compile_filter(node, lambda name: Field("datetime", lambda row: row))
    assert predicate("2024-01-02T02:04:04Z") and not predicate(datetime(2024, 1, 2, 2, 4, 5, tzinfo=UTC).isoformat())
