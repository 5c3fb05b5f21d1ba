"""Hand-written hostile cases. Each one must be refused with a 4xx carrying Dataverse's error body,
and must leave the server's state as it was (unless its steps say otherwise: a setup step that
writes on purpose expects its 2xx).

`HOSTILE` maps a case name to a function of the Context that yields the case's steps; a generator
may read each answer (`answer = yield Step(...)`). A case that the scenario cannot set up (no row of
the kind it needs) yields nothing and counts as tried.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from urllib.parse import quote

from fuzz.context import ROOT, Context, TableInfo, q, row_path
from fuzz.run import Flow, Step
from fuzz.wire import Answer, Request
from simulator.protocol.odata import MAX_BATCH_REQUESTS

Case = Callable[[Context], Flow]
HOSTILE: dict[str, Case] = {}
CRLF = "\r\n"
JSON = ("Content-Type", "application/json")
OCTETS = ("Content-Type", "application/octet-stream")


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        assert name not in HOSTILE, name
        HOSTILE[name] = fn
        return fn
    return register


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _own(ctx: Context) -> TableInfo | None:
    """The first table with a row the main user owns and may update."""
    return ctx.table("own")


# --- tokens ----------------------------------------------------------------------------------------
@case("auth/no-token")
def no_token(ctx: Context) -> Flow:
    yield Step(ctx.request("GET", f"{ROOT}/", who=None))
    info = _own(ctx)
    if info:
        yield Step(ctx.request("DELETE", row_path(info, info.own[0]), who=None))


@case("auth/forged-token")
def forged_token(ctx: Context) -> Flow:
    real = ctx.token("main")
    for forged in ("forged", real[:-1] + ("A" if real[-1] != "A" else "B"), real + "x", real.upper(),
                   "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZWNobmljaWFuLTAwMDEifQ.", "x" * 4096):
        yield Step(Request("GET", f"{ROOT}/{ctx.first_set}", [("Authorization", f"Bearer {forged}")], who="forged"))
    info = _own(ctx)
    if info:
        yield Step(Request("PATCH", row_path(info, info.own[0]), [("Authorization", "Bearer forged"), JSON],
                           json.dumps({info.primary_name: "forged"}).encode(), who="forged"))


@case("auth/malformed-authorization")
def malformed_authorization(ctx: Context) -> Flow:
    token = ctx.token("main")
    for value in (f"Basic {token}", "Bearer", "Bearer ", f"Token {token}", f"{token}", f"Bearer\t{token}x",
                  f"Bearer {token} {token}", "Negotiate abc"):
        yield Step(Request("GET", f"{ROOT}/{ctx.first_set}", [("Authorization", value)], who="forged"))
    yield Step(Request("GET", f"{ROOT}/{ctx.first_set}", [("Authorization", "Bearer x"), *ctx.auth("main")], who="forged"))


@case("auth/expired-token")
def expired_token(ctx: Context) -> Flow:
    token = ctx.new_token(ctx.main)
    ctx.server.advance_clock(ctx.token_ttl_s + 1)
    try:
        yield Step(Request("GET", f"{ROOT}/{ctx.first_set}", [("Authorization", f"Bearer {token}")], who="expired"))
        info = _own(ctx)
        if info:
            yield Step(Request("DELETE", row_path(info, info.own[0]), [("Authorization", f"Bearer {token}")],
                               who="expired"))
    finally:
        ctx.refresh_tokens()


@case("auth/admin-key-as-user-token")
def admin_key_as_user(ctx: Context) -> Flow:
    yield Step(ctx.request("GET", f"{ROOT}/{ctx.first_set}", who="admin"))
    info = _own(ctx)
    if info:
        yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", who="admin", json_body={info.primary_name: "x"}))


@case("auth/user-token-on-admin-routes")
def user_token_on_admin(ctx: Context) -> Flow:
    table = next(iter(ctx.tables))
    for method, path, body in (
            ("GET", "/_syncsim/counters", None), ("GET", "/_syncsim/ledger", None),
            ("GET", f"/_syncsim/snapshot?user={ctx.main}", None), ("GET", "/_syncsim/faults", None),
            ("PUT", "/_syncsim/faults", {"error_rate": 1}), ("POST", "/_syncsim/token", {"user": ctx.peer}),
            ("POST", "/_syncsim/privileges", {"user": ctx.main, "table": table, "write": "org"}),
            ("PUT", "/_syncsim/clock", {"time_scale": 1, "now": 1.0}), ("POST", "/_syncsim/run", {"started_at": 1.0}),
            ("PUT", "/_syncsim/activity", {"back_office": True})):
        for who in ("main", "other"):
            yield Step(ctx.request(method, path, who=who, json_body=body))
    yield Step(Request("PUT", "/_syncsim/faults", [("Authorization", f"Bearer {ctx.admin_key}x"), JSON],
                       b'{"error_rate": 1}', who="forged"))


@case("auth/other-users-token")
def other_users_token(ctx: Context) -> Flow:
    """The peer's token on the main user's rows: the peer's privileges apply, not the owner's."""
    for info in ctx.tables.values():
        for row in info.own[:1]:
            if not ctx.may("peer", info.logical, row, "read"):
                yield Step(ctx.request("GET", row_path(info, row), who="peer"))
            if not ctx.may("peer", info.logical, row, "update"):
                yield Step(ctx.request("PATCH", row_path(info, row), who="peer", json_body={info.primary_name: "x"},
                                       headers=[("If-Match", "*")]))
            if not ctx.may("peer", info.logical, row, "delete"):
                yield Step(ctx.request("DELETE", row_path(info, row), who="peer"))
    both = ctx.table("own", "foreign")
    if both is None:
        return
    # a row the peer owns is foreign to the main user: the main user's token may not change it
    yield Step(ctx.request("PATCH", row_path(both, both.foreign[0]), who="main", json_body={both.primary_name: "x"}))


# --- another user's ids --------------------------------------------------------------------------------
@case("ids/update-another-users-row")
def update_foreign(ctx: Context) -> Flow:
    info = ctx.table("foreign")
    if info is None:
        return
    row = info.foreign[0]
    yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "mine now"}))
    yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "x"},
                           headers=[("If-Match", ctx.etag(info.logical, row))]))
    for other in ctx.tables.values():
        for row in other.foreign_undeletable[:1]:
            yield Step(ctx.request("DELETE", row_path(other, row)))
            yield Step(ctx.request("DELETE", row_path(other, row), headers=[("If-Match", "*")]))


@case("ids/read-a-row-the-user-may-not-read")
def read_hidden(ctx: Context) -> Flow:
    info = ctx.table("hidden")
    if info is None:
        return
    row = info.hidden[0]
    yield Step(ctx.request("GET", row_path(info, row)))
    yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "x"},
                           headers=[("If-Match", "*")]))
    yield Step(ctx.request("DELETE", row_path(info, row)))
    if info.file_columns:
        yield Step(ctx.request("GET", row_path(info, row, f"/{info.file_columns[0]}/$value")))


@case("ids/upsert-onto-a-row-the-user-may-not-read")
def upsert_hidden(ctx: Context) -> Flow:
    """PATCH without If-Match is an upsert; on an existing row the user cannot see it must not create
    a second row or overwrite it."""
    info = ctx.table("hidden")
    if info is None:
        return
    yield Step(ctx.request("PATCH", row_path(info, info.hidden[0]), json_body={info.primary_name: "x"}))


@case("ids/another-users-file")
def foreign_file(ctx: Context) -> Flow:
    info = ctx.table("foreign_files")
    if info is None:
        return
    col, row = info.file_columns[0], info.foreign_files[0]
    yield Step(ctx.request("PATCH", row_path(info, row, f"/{col}"), body=b"mine",
                           headers=[OCTETS, ("x-ms-file-name", "evil.txt")]))
    yield Step(ctx.request("PATCH", q(row_path(info, row, f"/{col}"), {"x-ms-file-name": "evil.txt"}),
                           headers=[("x-ms-transfer-mode", "chunked")]))
    yield Step(ctx.request("DELETE", row_path(info, row, f"/{col}")))


@case("ids/another-users-upload-session")
def foreign_session(ctx: Context) -> Flow:
    info = ctx.table("own_files")
    if info is None:
        return
    col, row = info.file_columns[0], info.own_files[0]
    opened = yield Step(ctx.request("PATCH", q(row_path(info, row, f"/{col}"), {"x-ms-file-name": "a.bin"}),
                                            headers=[("x-ms-transfer-mode", "chunked")]), expect={200})
    location = opened.header("Location") or ""
    session = location.partition("?")[2]
    if not session:
        return
    chunk = [OCTETS, ("Content-Range", "bytes 0-2/3")]
    yield Step(ctx.request("PATCH", f"{row_path(info, row, f'/{col}')}?{session}", who="peer", body=b"abc",
                           headers=chunk))
    yield Step(ctx.request("PATCH", f"{row_path(info, row, '/description')}?{session}", body=b"abc", headers=chunk))


@case("ids/bulk-update-with-another-users-row")
def bulk_foreign(ctx: Context) -> Flow:
    info = ctx.table("own", "foreign")
    if info is None:
        return
    kind = f"Microsoft.Dynamics.CRM.{info.logical}"
    mine, theirs = info.own[0], info.foreign[0]
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.UpdateMultiple", json_body={
        "Targets": [{"@odata.type": kind, info.id_column: mine, info.primary_name: "a"},
                    {"@odata.type": kind, info.id_column: theirs, info.primary_name: "b"}]}))
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.UpsertMultiple", json_body={
        "Targets": [{"@odata.type": kind, "@odata.id": f"{info.set_name}({mine})", info.primary_name: "a"},
                    {"@odata.type": kind, "@odata.id": f"{info.set_name}({theirs})", info.primary_name: "b"}]}))


@case("ids/bulk-delete-another-users-rows")
def bulk_delete_foreign(ctx: Context) -> Flow:
    """BulkDelete skips the rows the user may not delete (as Dataverse's job does): 200, nothing deleted."""
    info = ctx.table("foreign_undeletable")
    if info is None:
        return
    values = [{"Value": i, "Type": "System.Guid"} for i in info.foreign_undeletable + info.hidden]
    body = {"JobName": "x", "QuerySet": [{"EntityName": info.logical, "Criteria": {"FilterOperator": "And", "Conditions": [
        {"AttributeName": info.id_column, "Operator": "In", "Values": values}]}}]}
    yield Step(ctx.request("POST", f"{ROOT}/BulkDelete", json_body=body), expect={200}, unchanged=True)


@case("ids/bind-to-a-row-that-does-not-exist")
def bind_missing(ctx: Context) -> Flow:
    for info in ctx.tables.values():
        for col in info.lookups:
            target = next((t for t in ctx.tables.values() if t.logical in _lookup_target(ctx, info, col)), None)
            if target is None:
                continue
            yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", json_body={
                f"{col}@odata.bind": f"/{target.set_name}({ctx.new_guid()})"}))
            yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", json_body={
                f"{col}@odata.bind": f"/systemusers({ctx.user_ids[ctx.main]})"}))
            return


def _lookup_target(ctx: Context, info: TableInfo, col: str) -> tuple[str, ...]:
    table = ctx.server.scenario.table(info.logical)
    column = table.column(col)
    return (column.target,) if column is not None and column.target else ()


# --- bodies ----------------------------------------------------------------------------------------
def _json_routes(ctx: Context) -> Iterator[tuple[str, str]]:
    """(method, path) of every route that reads a JSON body, on the main user's own row."""
    info = _own(ctx)
    if info is None:
        return
    row = info.own[0]
    yield "POST", f"{ROOT}/{info.set_name}"
    yield "PATCH", row_path(info, row)
    for action in ("CreateMultiple", "UpdateMultiple", "UpsertMultiple"):
        yield "POST", f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.{action}"
    yield "POST", f"{ROOT}/BulkDelete"


MALFORMED = (b'{"name": ', b'{"name": "x",}', b"{'name': 'x'}", b'{"a":1}{"b":2}', b"\xff\xfe{\x00}\x00",
             b"\xef\xbb\xbf{}", b"NaN", b'{"n": NaN}', b'{"n": Infinity}', b'{"n": 1e400}', b'{"n": -1e999}',
             b'{"a": "\\ud800"}', b'{"a": "\x00"}', b"[1, 2", b"nul", b'{"a": 01}', b'{"a": .5}', b'{"a": +1}',
             b"\x00", b'{"a": "' + b"\xc3\x28" + b'"}')
NOT_OBJECTS = (b"null", b"[]", b"[{}]", b'"text"', b"42", b"true")


@case("body/malformed-json")
def malformed_json(ctx: Context) -> Flow:
    for method, path in _json_routes(ctx):
        for body in MALFORMED:
            yield Step(ctx.request(method, path, body=body, headers=[JSON]))


@case("body/json-that-is-not-an-object")
def not_an_object(ctx: Context) -> Flow:
    for method, path in _json_routes(ctx):
        for body in NOT_OBJECTS:
            yield Step(ctx.request(method, path, body=body, headers=[JSON]))


def _deep_bodies(ctx: Context, depths: tuple[int, ...]) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for depth in depths:
        nested = _nested(depth).encode()
        for method, path in _json_routes(ctx):
            yield Step(ctx.request(method, path, body=b'{"' + info.primary_name.encode() + b'": ' + nested + b"}",
                                   headers=[JSON]))
        kind = f"Microsoft.Dynamics.CRM.{info.logical}".encode()
        yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.CreateMultiple", headers=[JSON],
                               body=b'{"Targets": [{"@odata.type": "' + kind + b'", "' + info.primary_name.encode()
                               + b'": ' + _nested(max(1, depth - 2)).encode() + b"}]}"))
        yield Step(ctx.request("POST", f"{ROOT}/$batch", body=nested, headers=[("Content-Type", "multipart/mixed; boundary=b")]))


@case("body/deeply-nested-json")
def deeply_nested(ctx: Context) -> Flow:
    """Nesting that orjson reads and writes (100 levels) and nesting past what it parses (1,024)."""
    yield from _deep_bodies(ctx, (100, 1100, 100_000))
    for depth in (100, 1100, 100_000):
        yield Step(ctx.request("POST", "/_syncsim/token", who="admin", headers=[JSON],
                               body=b'{"user": ' + _nested(depth).encode() + b"}"))


@case("body/json-nested-255-to-1024-levels")
def nested_between_limits(ctx: Context) -> Flow:
    """Nesting that orjson parses (up to 1,024 levels) but cannot write back (past 254)."""
    yield from _deep_bodies(ctx, (300, 1000))


@case("body/deep-json-in-the-token-route")
def deep_token_user(ctx: Context) -> Flow:
    yield Step(ctx.request("POST", "/_syncsim/token", who="admin", headers=[JSON],
                           body=b'{"user": ' + _nested(1000).encode() + b"}"))


@case("body/deep-json-in-an-annotation")
def deep_annotation(ctx: Context) -> Flow:
    """An instance annotation is ignored, but a body nested deeper than the server can re-encode must
    still be refused, not crash the request."""
    info = _own(ctx)
    if info is None:
        return
    nested = _nested(300).encode()
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", headers=[JSON],
                           body=b'{"' + info.primary_name.encode() + b'": "x", "x@odata.type": ' + nested + b"}"))
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), headers=[JSON],
                           body=b'{"' + info.primary_name.encode() + b'": "x", "x@odata.type": ' + nested + b"}"))


def _numbers(ctx: Context, whole: tuple[str, ...], decimal: tuple[str, ...]) -> Flow:
    for table in ctx.tables.values():
        if not table.own:
            continue
        for cols, values in ((table.of_type("integer", "choice"), whole), (table.of_type("decimal"), decimal)):
            for col in cols:
                for value in values:
                    yield Step(ctx.request("PATCH", row_path(table, table.own[0]), headers=[JSON],
                                           body=f'{{"{col}": {value}}}'.encode()))


@case("body/huge-numbers")
def huge_numbers(ctx: Context) -> Flow:
    """Numbers JSON parsers refuse (1e400) or read as floats (past 2^64, with a fraction or exponent):
    not whole numbers, and no number is text."""
    yield from _numbers(ctx, ("1e400", "1.5", "18446744073709551616", "99999999999999999999999999999999", "-0.0", "1e2"),
                        ("1e400", "-1e999", "true", '"12"'))
    info = _own(ctx)
    if info is not None:
        yield Step(ctx.request("PATCH", row_path(info, info.own[0]), headers=[JSON],
                               body=f'{{"{info.primary_name}": 1e300}}'.encode()))


@case("body/numbers-a-column-cannot-hold")
def numbers_too_big(ctx: Context) -> Flow:
    """Past Int32 for whole numbers (Edm.Int32), past Dataverse's decimal range (1e12 is its maximum)."""
    yield from _numbers(ctx, ("2147483648", "-2147483649", "18446744073709551615"),
                        ("1e308", "-1e308", "100000000000000000000000000000", "18446744073709551616"))


@case("body/number-outside-the-columns-range")
def out_of_range(ctx: Context) -> Flow:
    """EntityDefinitions advertises MinValue/MaxValue for whole-number and decimal columns; Dataverse
    refuses a value outside them (0x80044331)."""
    for table in ctx.tables.values():
        if not table.own:
            continue
        scenario_table = ctx.server.scenario.table(table.logical)
        for col in scenario_table.columns:
            if col.type in ("integer", "decimal"):
                for value in (col.max + 1, col.min - 1):
                    number = int(value) if col.type == "integer" else value
                    yield Step(ctx.request("PATCH", row_path(table, table.own[0]), json_body={col.name: number}))


@case("body/date-times-a-column-cannot-hold")
def datetimes_out_of_range(ctx: Context) -> Flow:
    """Dataverse's date-times run from 1753-01-01 to 9999-12-31 (CrmDateTime): earlier or later
    instants, also ones an offset moves out of the calendar, are 400 (0x80040239); a number is no date."""
    for table in ctx.tables.values():
        if not table.own:
            continue
        for col in table.of_type("datetime"):
            for value in ("1752-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                          "1753-01-01T00:30:00+01:00", 20240101):
                yield Step(ctx.request("PATCH", row_path(table, table.own[0]), json_body={col: value}))


@case("body/oversized")
def oversized(ctx: Context) -> Flow:
    limit = int(ctx.server.scenario.server.max_body_mb * 1024 * 1024)
    info = _own(ctx)
    if info is None:
        return
    big = json.dumps({info.primary_name: "x" * (limit + 10)}).encode()
    for method, path in _json_routes(ctx):
        yield Step(ctx.request(method, path, body=big, headers=[JSON]))
    # no Content-Length: the body comes chunked and the limit must still hold
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536]) for i in range(0, len(big), 65536))
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", body=chunked + b"0\r\n\r\n",
                           headers=[JSON, ("Transfer-Encoding", "chunked")]))
    boundary = "b"
    batch = (f"--{boundary}{CRLF}Content-Type: application/http{CRLF}{CRLF}POST {info.set_name} HTTP/1.1{CRLF}"
             f"Content-Type: application/json{CRLF}{CRLF}").encode() + big + f"{CRLF}--{boundary}--{CRLF}".encode()
    yield Step(ctx.request("POST", f"{ROOT}/$batch", body=batch, headers=[("Content-Type", f"multipart/mixed; boundary={boundary}")]))
    if info.file_columns and info.own:
        yield Step(ctx.request("PATCH", row_path(info, info.own[0], f"/{info.file_columns[0]}"), body=big,
                               headers=[OCTETS, ("x-ms-file-name", "big.bin")]))


@case("body/oversized-on-a-syncsim-route")
def oversized_admin(ctx: Context) -> Flow:
    limit = int(ctx.server.scenario.server.max_body_mb * 1024 * 1024)
    yield Step(ctx.request("POST", "/_syncsim/token", who="admin", body=json.dumps({"user": "x" * (limit + 10)}).encode(),
                           headers=[JSON]))


@case("body/wrong-content-type")
def wrong_content_type(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    body = json.dumps({info.primary_name: "x"}).encode()
    for ctype in ("text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                  "text/json", "application/octet-stream", ""):
        for method, path in _json_routes(ctx):
            yield Step(ctx.request(method, path, body=body, headers=[("Content-Type", ctype)]))
    yield Step(ctx.request("POST", f"{ROOT}/$batch", body=body, headers=[JSON]))
    yield Step(ctx.request("POST", f"{ROOT}/$batch", body=body, headers=[("Content-Type", "multipart/form-data; boundary=b")]))


@case("body/json-lookalike-content-types")
def json_lookalikes(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    body = json.dumps({info.primary_name: "x"}).encode()
    for ctype in ("application/json-patch+json", "application/jsonl"):
        for method, path in _json_routes(ctx):
            yield Step(ctx.request(method, path, body=body, headers=[("Content-Type", ctype)]))


@case("body/json-in-another-charset")
def other_charset(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    body = json.dumps({info.primary_name: "é"}).encode("utf-16")
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", body=body, headers=[("Content-Type", "application/json; charset=utf-16")]))


# --- system and read-only columns -----------------------------------------------------------------
def _write_columns(ctx: Context, columns_of: Callable[[TableInfo], dict[str, object]]) -> Flow:
    for info in ctx.tables.values():
        if not info.own:
            continue
        for name, value in columns_of(info).items():
            yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={name: value}))
            yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", json_body={name: value}))


@case("columns/write-system-and-read-only-columns")
def read_only_columns(ctx: Context) -> Flow:
    """Columns the server computes (system columns, file companions, file ids) are not written
    through a row body: 400."""
    def columns(info: TableInfo) -> dict[str, object]:
        out: dict[str, object] = {
            "createdon": "2001-01-01T00:00:00Z", "modifiedon": "2001-01-01T00:00:00Z", "versionnumber": 1,
            "_ownerid_value": ctx.user_ids[ctx.peer], "ownerid": ctx.user_ids[ctx.peer]}
        for col in info.file_columns:
            out.update({col: ctx.new_guid(), f"{col}_name": "x.txt", f"{col}_size": 1})
        return out
    yield from _write_columns(ctx, columns)


@case("columns/write-a-lookup-value-directly")
def lookup_value(ctx: Context) -> Flow:
    """`_<lookup>_value` is computed from the lookup (set with `<lookup>@odata.bind`)."""
    yield from _write_columns(ctx, lambda info: {f"_{col}_value": ctx.new_guid() for col in info.lookups})


@case("columns/change-the-primary-id")
def change_primary_id(ctx: Context) -> Flow:
    """A PATCH body naming another primary id than the URL's."""
    info = _own(ctx)
    if info is None:
        return
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={info.id_column: ctx.new_guid()}))
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={info.id_column: "not-a-guid"}))


@case("columns/clear-a-system-column-through-the-column-route")
def delete_system_column(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for column in ("versionnumber", "createdon", "modifiedon", "_ownerid_value", "ownerid"):
        yield Step(ctx.request("DELETE", row_path(info, info.own[0], f"/{column}")))


@case("columns/clear-the-primary-id-through-the-column-route")
def delete_id_column(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    yield Step(ctx.request("DELETE", row_path(info, info.own[0], f"/{info.id_column}")))


# --- idempotency ----------------------------------------------------------------------------------------
@case("idempotency/reused-key-with-another-payload")
def reused_key(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    key = ("x-syncsim-idempotency-key", ctx.unique("key"))
    path = f"{ROOT}/{info.set_name}"
    yield Step(ctx.request("POST", path, json_body={info.primary_name: "first"}, headers=[key]), expect={204})
    yield Step(ctx.request("POST", path, json_body={info.primary_name: "second"}, headers=[key]))
    yield Step(ctx.request("POST", q(path, {"x": "1"}), json_body={info.primary_name: "first"}, headers=[key]))
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={info.primary_name: "first"}, headers=[key]))
    yield Step(ctx.request("DELETE", row_path(info, info.own[0]), headers=[key]))
    yield Step(ctx.request("POST", f"{ROOT}/$batch", body=_batch("b", [_part("GET", info.set_name)]),
                           headers=[key, ("Content-Type", "multipart/mixed; boundary=b")]))


@case("idempotency/reused-key-after-a-refusal")
def reused_key_after_refusal(ctx: Context) -> Flow:
    """A 4xx is replayed too: the same key with a valid payload is still refused (422), and writes nothing."""
    info = _own(ctx)
    if info is None:
        return
    key = ("x-syncsim-idempotency-key", ctx.unique("key"))
    path = f"{ROOT}/{info.set_name}"
    yield Step(ctx.request("POST", path, json_body={"nope": 1}, headers=[key]))
    yield Step(ctx.request("POST", path, json_body={info.primary_name: "valid"}, headers=[key]))


@case("idempotency/another-users-key-is-not-theirs")
def key_of_another_user(ctx: Context) -> Flow:
    """Keys are per user: the peer sending the main user's key gets its own answer, not a replay."""
    info = _own(ctx)
    if info is None:
        return
    key = ("x-syncsim-idempotency-key", ctx.unique("key"))
    body = {info.primary_name: "same"}
    first = yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", json_body=body, headers=[key]), expect={204})

    def not_a_replay(second: Answer) -> str | None:
        entity = second.header("OData-EntityId")
        if second.header("x-syncsim-replayed") or (entity and entity == first.header("OData-EntityId")):
            return "the peer got the main user's answer replayed"
        return None

    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", who="peer", json_body=body, headers=[key]),
               expect={204, 403}, verify=not_a_replay)


# --- paging and query options ------------------------------------------------------------------------
@case("query/page-size-over-the-limit")
def page_size_over(ctx: Context) -> Flow:
    """Above 5,000 the page size is capped (as the document says), never refused or honoured."""
    info = _own(ctx)
    if info is None:
        return
    def capped(answer: Answer) -> str | None:
        applied = answer.header("Preference-Applied") or ""
        if "odata.maxpagesize=5000" not in applied:
            return f"Preference-Applied is {applied!r}, not the capped odata.maxpagesize=5000"
        return None

    for value in ("5001", "50000", "2147483648", "99999999999999999999999999"):
        yield Step(ctx.request("GET", f"{ROOT}/{info.set_name}", headers=[("Prefer", f"odata.maxpagesize={value}")]),
                   expect={200}, verify=capped)


@case("query/bad-page-sizes")
def bad_page_sizes(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for value in ("0", "-1", "abc", "1.5", "1e3", "0x10", "-0", "5000x"):
        for tracked in ("", ",odata.track-changes"):
            yield Step(ctx.request("GET", f"{ROOT}/{info.set_name}", headers=[("Prefer", f"odata.maxpagesize={value}{tracked}")]))


@case("query/bad-top")
def bad_top(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for value in ("-1", "abc", "1.5", "", "1e3", "٣x", "0x10", "+1"):
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$top": value})))


@case("query/top-with-a-superscript-digit")
def top_superscript(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for value in ("²", "1²"):
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$top": value})))


@case("query/unsupported-options")
def unsupported_options(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for name, value in (("$skip", "1"), ("$expand", "x"), ("$apply", "groupby((name))"), ("$search", "x"),
                        ("$format", "xml"), ("fetchXml", "<fetch/>"), ("$nope", "1"), ("$select", "nope"),
                        ("$orderby", "nope"), ("$orderby", f"{info.primary_name} sideways")):
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {name: value})))


FILTERS = ("name eq", "(((name eq 'x')", "name eq 'x'))", "nope eq 1", "name eq 1", "contains(name)",
           "contains(name, 1)", "name eq 'unterminated", "name", "not", "name eq 'x' and",
           "Microsoft.Dynamics.CRM.In(PropertyName='name')", "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[)",
           "substringof('a', name)", "name eq @p1", "name eq 'x' or or name eq 'y'", "createdon gt 2024-13-45",
           "createdon gt 2024-02-30T00:00:00Z", "versionnumber gt 9" * 3, "$it eq 1")


@case("query/bad-filters")
def bad_filters(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for text in FILTERS:
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$filter": text.replace("name", info.primary_name)})))


@case("query/deeply-nested-filter")
def nested_filter(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    leaf = f"{info.primary_name} eq 'x'"
    for depth in (65, 500):
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$filter": "(" * depth + leaf + ")" * depth})))
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$filter": "not " * depth + leaf})))
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$filter": "contains(" * depth + leaf})))
    yield Step(ctx.request("GET", q(f"{ROOT}/EntityDefinitions", {"$filter": "(" * 100 + "LogicalName eq 'x'" + ")" * 100})))


@case("query/long-urls")
def long_url(ctx: Context) -> Flow:
    """URLs past aiohttp's default 8,190-byte request line are read up to Dataverse's 32,768 characters
    (refused here for what they ask, or served); past that the answer is a 400 with the error body."""
    info = _own(ctx)
    if info is None:
        return
    leaf = f"{info.primary_name} eq 'x'"
    yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$filter": "(" * 3000 + leaf + ")" * 3000})))
    yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$select": ",".join([info.primary_name] * 2000)})),
               expect={200})
    yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$select": ",".join([info.primary_name] * 8000)})))


@case("query/datetime-literals-out-of-range")
def datetime_overflow(ctx: Context) -> Flow:
    """Dates at the edge of the calendar with an offset that pushes them past it in UTC."""
    info = _own(ctx)
    if info is None:
        return
    for literal in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:30+00:45"):
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$filter": f"createdon gt {literal}"})))
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}/$count", {"$filter": f"modifiedon le {literal}"})))
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {
            "$filter": f"Microsoft.Dynamics.CRM.In(PropertyName='createdon',PropertyValues=['{literal}'])"})))


@case("query/forged-skiptoken")
def forged_skiptoken(ctx: Context) -> Flow:
    """A $skiptoken is opaque: one the server did not make (or made for another query) is a 400."""
    info = _own(ctx)
    if info is None:
        return
    base = f"{ROOT}/{info.set_name}"
    for order in ("createdon", "modifiedon desc", info.primary_name):
        # well-formed cookies the server cannot tell from its own: any answer but a 5xx
        wellformed: tuple[list[object], ...] = (["2024-01-01T00:00:00Z"], [{"a": 1}], [None], [1e308], ["x" * 1000])
        for forged in wellformed:
            yield Step(ctx.request("GET", q(base, {"$orderby": order, "$skiptoken": _cookie(forged)})), expect=None)
        for count in (0, 2):  # the wrong number of values for the $orderby
            yield Step(ctx.request("GET", q(base, {"$orderby": order, "$skiptoken": _cookie([1] * count)})))
    for raw in ("i.999999999999999999999.0", "d.-1.-1.u.", "i.0.zzzz"):  # tracking cookies: as above
        yield Step(ctx.request("GET", q(base, {"$skiptoken": raw})), expect=None)
    for raw in ("garbage", "i.x.y", "d.1.2.q.x", "d.1.x.u.y", _cookie([], "x"), _cookie([], 1, 5),
                '<cookie pagenumber="²" pagingcookie="x" />', '<cookie pagenumber="2" pagingcookie="%ZZ" />'):
        yield Step(ctx.request("GET", q(base, {"$skiptoken": raw})))


@case("query/skiptoken-with-an-out-of-range-date")
def skiptoken_date_overflow(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    for order in ("createdon", "modifiedon desc"):
        for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
            yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {"$orderby": order, "$skiptoken": _cookie([value])})),
                       expect=None)


def _cookie(values: object, served: object = 1, last: object = "0") -> str:
    """A $skiptoken shaped as the server makes them (query.encode_skiptoken), with chosen contents."""
    data = base64.urlsafe_b64encode(json.dumps([served, last, values]).encode()).decode()
    inner = quote(f'<cookie page="1" syncsim="{data}"><x last="{{0}}" first="{{0}}" /></cookie>', safe="")
    return f'<cookie pagenumber="2" pagingcookie="{inner}" istracking="False" />'


@case("query/forged-and-expired-deltatokens")
def forged_deltatoken(ctx: Context) -> Flow:
    info = next((t for t in ctx.tables.values() if t.change_tracking), None)
    if info is None:
        return
    base = f"{ROOT}/{info.set_name}"
    for token in ("garbage", "1000!13/01/2024 00:00:00", "1000!01/01/0000 00:00:00", "1000!01/01/1970 00:00:00",
                  "²!01/01/2024 00:00:00", "-5!01/01/2024 00:00:00", "", "1000!01/01/2024 25:00:00x"):
        yield Step(ctx.request("GET", q(base, {"$deltatoken": token})))
        yield Step(ctx.request("GET", q(f"{base}/$count", {"$deltatoken": token})))
    # well-formed tokens the server cannot tell from its own (a day that does not exist is rolled over)
    for token in ("1000!02/30/2024 00:00:00", "999999999!01/01/2099 00:00:00", "0!01/01/2099 00:00:00"):
        yield Step(ctx.request("GET", q(base, {"$deltatoken": token})), expect=None)


@case("query/tracking-with-query-options")
def tracking_options(ctx: Context) -> Flow:
    info = next((t for t in ctx.tables.values() if t.change_tracking), None)
    if info is None:
        return
    tracked = [("Prefer", "odata.track-changes")]
    for name, value in (("$filter", f"{info.primary_name} eq 'x'"), ("$orderby", info.primary_name), ("$top", "1"),
                        ("$expand", "x")):
        yield Step(ctx.request("GET", q(f"{ROOT}/{info.set_name}", {name: value}), headers=tracked))


# --- headers -----------------------------------------------------------------------------------------
@case("headers/bad-if-match-and-base-version")
def bad_preconditions(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    row = info.own[0]
    for value in ("soon", 'W/"x"', '"1', "W/1", 'W/"1", W/"2"', 'W/"-1"'):
        yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "x"}, headers=[("If-Match", value)]))
    yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "x"},
                           headers=[("If-Match", ctx.etag(info.logical, row, -1))]))
    yield Step(ctx.request("DELETE", row_path(info, row), headers=[("If-Match", ctx.etag(info.logical, row, +1))]))
    yield Step(ctx.request("PATCH", row_path(info, ctx.new_guid()), json_body={info.primary_name: "x"},
                           headers=[("If-Match", "*")]))
    yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "x"}, headers=[("If-None-Match", "*")]))
    for value in ("-1", "abc", "1.5", "", " ", "0x10", "1e3"):
        yield Step(ctx.request("PATCH", row_path(info, row), json_body={info.primary_name: "x"},
                               headers=[("x-syncsim-base-version", value)]))


@case("headers/base-version-with-a-superscript-digit")
def base_version_superscript(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={info.primary_name: "x"},
                           headers=[("x-syncsim-base-version", "²".encode())]))


@case("headers/base-version-past-64-bits")
def base_version_huge(ctx: Context) -> Flow:
    """A row version past 64 bits is not one; if it gets into the write log the ledger cannot be read."""
    info = _own(ctx)
    if info is None:
        return
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={info.primary_name: "x"},
                           headers=[("x-syncsim-base-version", str(10**20))]))
    yield Step(ctx.request("GET", "/_syncsim/ledger", who="admin"), expect={200})


@case("headers/header-longer-than-8190-bytes")
def oversized_header(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    yield Step(ctx.request("GET", f"{ROOT}/{info.set_name}", headers=[("Prefer", "odata.maxpagesize=1," + "x" * 20000)]))


@case("headers/malformed-content-length")
def malformed_content_length(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    body = json.dumps({info.primary_name: "x"}).encode()
    for value in ("abc", "-1", "1e2"):
        yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", body=body, headers=[JSON, ("Content-Length", value)]))


@case("headers/bad-ranges")
def bad_ranges(ctx: Context) -> Flow:
    info = ctx.table("own_files")
    if info is None:
        return
    path = row_path(info, info.own_files[0], f"/{info.file_columns[0]}/$value")
    for value in ("bytes=5-1", "bytes=99999999999999999999-", "bytes=0-0,5-6", "lines=0-1", "bytes=-0", "bytes=-",
                  "bytes=²-3", "bytes=x-y"):
        yield Step(ctx.request("GET", path, headers=[("Range", value)]))
        yield Step(ctx.request("HEAD", path, headers=[("Range", value)]))


# --- paths -------------------------------------------------------------------------------------------
@case("paths/bad-keys-and-segments")
def bad_paths(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    row = info.own[0]
    for path, method in ((f"{ROOT}/{info.set_name}(../../_syncsim/ledger)", "GET"),
                         (f"{ROOT}/{info.set_name}('{row}')", "GET"), (f"{ROOT}/{info.set_name}(x=1,x=2)", "GET"),
                         (f"{ROOT}/{info.set_name}(%00)", "GET"), (f"{ROOT}/{info.set_name}({row}%00)", "DELETE"),
                         (f"{ROOT}/{info.set_name}({row})/../../{info.set_name}", "GET"), (f"{ROOT}/{'x' * 3000}", "GET"),
                         (f"{ROOT}/{info.set_name}({row})/{info.primary_name}/$value", "GET"),
                         (f"{ROOT}/EntityDefinitions(LogicalName='{info.logical}''x')", "GET"),
                         (f"{ROOT}/EntityDefinitions(LogicalName=)", "GET"), (f"{ROOT}/EntityDefinitions('x')", "GET"),
                         (f"{ROOT}/{info.set_name}(accountnumber='A-1')", "DELETE"), (f"{ROOT}/%24batch", "GET"),
                         (f"{ROOT}/{info.set_name}", "PUT"), (f"{ROOT}/{info.set_name}({row})", "PUT"),
                         (f"{ROOT}/{info.set_name}({row})", "OPTIONS"), (f"{ROOT}/{info.set_name}", "TRACE"),
                         (f"{ROOT}/{info.set_name}({row})", "POST"), ("/_syncsim/health", "DELETE")):
        yield Step(ctx.request(method, path, body=b"{}" if method in ("PUT", "POST") else None,
                               headers=[JSON] if method in ("PUT", "POST") else []))


# --- $batch ------------------------------------------------------------------------------------------
def _part(method: str, url: str, body: object = None, headers: list[tuple[str, str]] | None = None,
          content_id: str | None = None) -> str:
    mime = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    mime += [f"Content-ID: {content_id}"] if content_id is not None else []
    inner = [f"{method} {url} HTTP/1.1", *(f"{k}: {v}" for k, v in headers or [])]
    if body is not None:
        inner.append("Content-Type: application/json; type=entry")
    text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
    return CRLF.join([*mime, "", *inner, "", text]) + CRLF


def _changeset(boundary: str, parts: list[str]) -> str:
    inner = "".join(f"--{boundary}{CRLF}{p}" for p in parts) + f"--{boundary}--{CRLF}"
    return f"Content-Type: multipart/mixed; boundary={boundary}{CRLF}{CRLF}{inner}"


def _batch(boundary: str, parts: list[str], close: bool = True) -> bytes:
    out = "".join(f"--{boundary}{CRLF}{p}" for p in parts)
    return (out + (f"--{boundary}--{CRLF}" if close else "")).encode()


def _batch_step(ctx: Context, body: bytes, boundary: str | None = "b", expect: frozenset[int] | set[int] | None = None,
                headers: list[tuple[str, str]] | None = None) -> Step:
    ctype = "multipart/mixed" + (f"; boundary={boundary}" if boundary is not None else "")
    step = Step(ctx.request("POST", f"{ROOT}/$batch", body=body, headers=[("Content-Type", ctype), *(headers or [])]))
    if expect is not None:
        step.expect = expect
    return step


@case("batch/broken-boundaries")
def batch_boundaries(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    get = _part("GET", info.set_name)
    good = _batch("b", [get])
    yield _batch_step(ctx, good, boundary=None)
    yield _batch_step(ctx, good, boundary="other")
    yield _batch_step(ctx, good, boundary='"b')
    yield _batch_step(ctx, _batch("b", [get], close=False))
    yield _batch_step(ctx, b"")
    yield _batch_step(ctx, b"preamble only\r\n")
    yield _batch_step(ctx, good.replace(b"Content-Type: application/http", b"Content-Type: text/plain"))
    yield _batch_step(ctx, good.replace(b"Content-Type: application/http\r\n", b""))
    yield _batch_step(ctx, good.replace(b"GET ", b"FETCH "))
    yield _batch_step(ctx, good.replace(b" HTTP/1.1", b""))
    yield _batch_step(ctx, good.replace(b"Content-Type: application/http", b"Content-Type: multipart/mixed"))
    yield _batch_step(ctx, good.replace(b"Content-Transfer-Encoding", b" Content-Transfer-Encoding"))
    yield _batch_step(ctx, b"--b\r\n\xff\xfe: x\r\n\r\nGET x HTTP/1.1\r\n\r\n\r\n--b--\r\n")
    yield _batch_step(ctx, good, boundary="b" * 5000)
    yield _batch_step(ctx, _batch(".*", [get]), boundary=".*", expect={200})  # a boundary that is a regex


@case("batch/delimiter-without-a-line-break")
def batch_delimiter(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    yield _batch_step(ctx, _batch("b", [_part("GET", info.set_name)]).replace(b"--b\r\n", b"--b"))


@case("batch/changesets-that-break-the-rules")
def batch_changesets(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    post = _part("POST", info.set_name, {info.primary_name: "in batch"})
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [_part("GET", info.set_name)])]))
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [_changeset("cs2", [post])])]))
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [post]).replace("boundary=cs", "charset=x")]))
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [post])[:-10]]))
    yield _batch_step(ctx, _batch("b", [_part("POST", info.set_name, {info.primary_name: "a"}, content_id="1"),
                                        _part("POST", info.set_name, {info.primary_name: "b"}, content_id="1")]))


@case("batch/recursion")
def batch_recursion(ctx: Context) -> Flow:
    inner = _batch("in", [_part("GET", ctx.first_set)]).decode()
    for url in ("$batch", f"{ROOT}/$batch", "http://localhost/api/data/v9.2/$batch", "%24batch", f"{ROOT}//$batch",
                f"{ROOT}/$batch/", "$batch?x=1"):
        yield _batch_step(ctx, _batch("b", [_part("POST", url, inner, [("Content-Type", "multipart/mixed; boundary=in")])]))
    info = _own(ctx)
    if info:
        post = _part("POST", "$batch", inner, [("Content-Type", "multipart/mixed; boundary=in")])
        yield _batch_step(ctx, _batch("b", [_changeset("cs", [post])]))


@case("batch/too-many-parts")
def batch_too_many(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    count = _part("GET", f"{info.set_name}/$count")
    yield _batch_step(ctx, _batch("b", [count] * MAX_BATCH_REQUESTS), expect={200})
    yield _batch_step(ctx, _batch("b", [count] * (MAX_BATCH_REQUESTS + 1)))
    post = _part("POST", info.set_name, {info.primary_name: "one too many"})
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [post] * (MAX_BATCH_REQUESTS + 1))]))
    yield _batch_step(ctx, _batch("b", [post, _changeset("cs", [post] * MAX_BATCH_REQUESTS)]))


@case("batch/failing-changeset-is-undone")
def batch_failing_changeset(ctx: Context) -> Flow:
    """A changeset whose last item fails undoes the items before it: the batch is 400 and nothing changed."""
    info = _own(ctx)
    if info is None:
        return
    ok = _part("POST", info.set_name, {info.primary_name: "undone"})
    update = _part("PATCH", f"{info.set_name}({info.own[0]})", {info.primary_name: "undone"})
    bad = _part("POST", info.set_name, {"nope": 1})
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [ok, bad])]))
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [update, ok, bad])]))


@case("batch/undone-delete-is-not-in-the-ledger")
def batch_undone_delete(ctx: Context) -> Flow:
    """A delete undone with its changeset leaves the row in place, and the ledger must not list it as deleted."""
    info = _own(ctx)
    if info is None:
        return
    row = info.own[-1]
    bad = _part("POST", info.set_name, {"nope": 1})
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [_part("DELETE", f"{info.set_name}({row})"), bad])]))
    yield Step(ctx.request("GET", row_path(info, row)), expect={200})

    def not_deleted(answer: Answer) -> str | None:
        listed = answer.json().get("deleted", {}).get(info.logical, []) if answer.status == 200 else []
        return f"the ledger lists {row} as deleted, but the row exists" if row in listed else None

    yield Step(ctx.request("GET", "/_syncsim/ledger", who="admin"), expect={200}, verify=not_deleted)


@case("batch/failing-bulk-action-is-undone")
def bulk_undone(ctx: Context) -> Flow:
    """CreateMultiple is all or nothing: a failing target undoes the ones before it."""
    info = _own(ctx)
    if info is None:
        return
    kind = f"Microsoft.Dynamics.CRM.{info.logical}"
    path = f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.CreateMultiple"
    yield Step(ctx.request("POST", path, json_body={"Targets": [
        {"@odata.type": kind, info.primary_name: "a"}, {"@odata.type": kind, "nope": 1}]}))
    yield Step(ctx.request("POST", path, json_body={"Targets": [
        {"@odata.type": kind, info.primary_name: "a"}, {"@odata.type": kind, info.id_column: info.own[0]}]}))
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.UpsertMultiple", json_body={"Targets": [
        {"@odata.type": kind, info.primary_name: "a"}, {"@odata.type": kind, "nope": 1}]}))


@case("batch/inner-requests-that-leave-the-api")
def batch_escapes(ctx: Context) -> Flow:
    for url in ("/_syncsim/ledger", "../../_syncsim/ledger", f"{ROOT}/../../_syncsim/faults",
                "http://other.example/_syncsim/ledger", "$99", "$1/../../x"):
        yield _batch_step(ctx, _batch("b", [_part("GET", url)]))
    yield _batch_step(ctx, _batch("b", [_part("PUT", "/_syncsim/faults", {"error_rate": 1})]))


@case("batch/unknown-content-id-reference")
def batch_unknown_ref(ctx: Context) -> Flow:
    info = _own(ctx)
    if info is None:
        return
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [_part("PATCH", "$2", {info.primary_name: "b"}, content_id="1")])]))
    yield _batch_step(ctx, _batch("b", [_part("DELETE", "$1")]))
    for table in ctx.tables.values():
        if table.lookups:
            body = {table.primary_name: "x", f"{table.lookups[0]}@odata.bind": "$7"}
            yield _batch_step(ctx, _batch("b", [_changeset("cs", [_part("POST", table.set_name, body, content_id="1")])]))
            break


@case("batch/another-users-token-inside")
def batch_inner_token(ctx: Context) -> Flow:
    """An inner Authorization header does not change who the batch runs as."""
    info = ctx.table("own", "foreign")
    if info is None:
        return
    part = _part("PATCH", f"{info.set_name}({info.foreign[0]})", {info.primary_name: "x"},
                 [("Authorization", f"Bearer {ctx.token('admin')}")])
    yield _batch_step(ctx, _batch("b", [part]))
    yield _batch_step(ctx, _batch("b", [_changeset("cs", [part])]))



# --- alternate keys --------------------------------------------------------------------------------
def _keyed(ctx: Context) -> TableInfo | None:
    """The first table with an alternate key and own rows that have values for it."""
    return next((t for t in ctx.tables.values() if t.keys and any(r in t.alternate for r in t.own)), None)


@case("keys/duplicate-alternate-key")
def duplicate_key(ctx: Context) -> Flow:
    """Another row's alternate-key values on a create or an update: 412 (DuplicateRecordEntityKey)."""
    info = _keyed(ctx)
    if info is None:
        return
    mine = next(r for r in info.own if r in info.alternate)
    taken = next((info.key_values[r] for r in info.alternate if r != mine), None)
    if taken is None:
        return
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}", json_body=taken))
    yield Step(ctx.request("PATCH", row_path(info, mine), json_body=taken, headers=[("If-Match", "*")]))
    kind = f"Microsoft.Dynamics.CRM.{info.logical}"
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}/Microsoft.Dynamics.CRM.CreateMultiple",
                           json_body={"Targets": [{"@odata.type": kind, **taken}]}))


@case("keys/duplicate-alternate-key-in-another-case")
def duplicate_key_case(ctx: Context) -> Flow:
    """Dataverse enforces alternate keys with a case-insensitive index: 'ABC-1' and 'abc-1' clash."""
    info = _keyed(ctx)
    if info is None:
        return
    mine = next(r for r in info.own if r in info.alternate)
    taken = next((info.key_values[r] for r in info.alternate if r != mine), None)
    if taken is None or not any(isinstance(v, str) and v.lower() != v for v in taken.values()):
        return
    yield Step(ctx.request("POST", f"{ROOT}/{info.set_name}",
                           json_body={k: v.lower() if isinstance(v, str) else v for k, v in taken.items()}))


@case("keys/alternate-key-of-another-users-row")
def key_of_other_rows(ctx: Context) -> Flow:
    """Naming a row by its alternate key grants nothing its id would not: 404 for a row the user may
    not read (an upsert must not create a second row with its key), 403 for one it may not change."""
    info = next((t for t in ctx.tables.values() if any(r in t.alternate for r in t.hidden + t.foreign)), None)
    if info is None:
        return
    for row in info.hidden:
        if row in info.alternate:
            path = f"{ROOT}/{info.set_name}({info.alternate[row]})"
            yield Step(ctx.request("GET", path))
            yield Step(ctx.request("PATCH", path, json_body={info.primary_name: "x"}, headers=[("If-Match", "*")]))
            yield Step(ctx.request("PATCH", path, json_body={info.primary_name: "x"}))
            yield Step(ctx.request("DELETE", path))
            break
    for row in info.foreign:
        if row in info.alternate:
            path = f"{ROOT}/{info.set_name}({info.alternate[row]})"
            yield Step(ctx.request("PATCH", path, json_body={info.primary_name: "x"}))
            if row in info.foreign_undeletable:
                yield Step(ctx.request("DELETE", path))
            break


@case("keys/malformed-alternate-keys")
def malformed_keys(ctx: Context) -> Flow:
    info = _keyed(ctx)
    if info is None:
        return
    column = next(iter(info.keys.values()))[0]
    for key in (f"{column}=", f"{column}='x", f"{column}='x',{column}='y'", f"{column}=1e999", f"{column}=nan",
                f"{column}=²", "nope='x'", "='x'", f"{column}=='x'", f"{column.upper()}='x'x", f"{column}=x"):
        yield Step(ctx.request("GET", f"{ROOT}/{info.set_name}({quote(key, safe=chr(39) + '=,')})"))
        yield Step(ctx.request("PATCH", f"{ROOT}/{info.set_name}({quote(key, safe=chr(39) + '=,')})",
                               json_body={info.primary_name: "x"}))


@case("keys/alternate-key-with-a-trailing-comma")
def key_trailing_comma(ctx: Context) -> Flow:
    info = _keyed(ctx)
    if info is None:
        return
    column = next(iter(info.keys.values()))[0]
    yield Step(ctx.request("PATCH", f"{ROOT}/{info.set_name}({column}='{ctx.unique('K')}',)",
                           json_body={info.primary_name: "x"}))


@case("keys/upsert-by-a-key-with-characters-a-header-cannot-carry")
def upsert_by_odd_key(ctx: Context) -> Flow:
    """Not hostile: an upsert by a key holding a line break or non-ASCII text creates the row; the key
    in OData-EntityId is percent-encoded (a raw line break cannot be sent in a header)."""
    info = _keyed(ctx)
    if info is None:
        return
    column = next(iter(info.keys.values()))[0]
    for value in ("a\r\nb", "café", "x\x7f"):
        yield Step(ctx.request("PATCH", f"{ROOT}/{info.set_name}({column}='{quote(ctx.unique(value)[:20], safe='')}')",
                               json_body={info.primary_name: "x"}), expect={204})


@case("keys/upsert-by-alternate-key")
def upsert_by_key(ctx: Context) -> Flow:
    """Not hostile: an upsert by a new alternate key creates the row; its answer must conform."""
    info = _keyed(ctx)
    if info is None:
        return
    column = next(iter(info.keys.values()))[0]
    yield Step(ctx.request("PATCH", f"{ROOT}/{info.set_name}({column}='{ctx.unique('K')}')",
                           json_body={info.primary_name: "x"}), expect={204})


# --- header values that are not UTF-8 ----------------------------------------------------------------
@case("files/file-name-that-is-not-utf-8")
def file_name_latin1(ctx: Context) -> Flow:
    """`x-ms-file-name: café.txt` as Latin-1 bytes: refused or kept, the row must stay readable."""
    info = ctx.table("own_files") or ctx.table("own")
    if info is None or not info.file_columns:
        return
    row = (info.own_files or info.own)[0]
    yield Step(ctx.request("PATCH", row_path(info, row, f"/{info.file_columns[0]}"), body=b"abc",
                           headers=[OCTETS, ("x-ms-file-name", b"caf\xe9.txt")]), expect=None)
    yield Step(ctx.request("GET", row_path(info, row)), expect={200})
    yield Step(ctx.request("GET", f"{ROOT}/{info.set_name}"), expect={200})


@case("headers/device-id-that-is-not-utf-8")
def device_id_latin1(ctx: Context) -> Flow:
    """A device or op id that is not UTF-8: refused or kept, the ledger must stay readable."""
    info = _own(ctx)
    if info is None:
        return
    yield Step(ctx.request("PATCH", row_path(info, info.own[0]), json_body={info.primary_name: "x"},
                           headers=[("x-syncsim-device-id", b"dev-\xff"), ("x-syncsim-op-id", b"op-\xfe")]), expect=None)
    yield Step(ctx.request("GET", "/_syncsim/ledger", who="admin"), expect={200})
