"""Cases generated from simulator/protocol/openapi.yaml by schemathesis, steered towards the server's
real data.

schemathesis draws every operation's path parameters, query options, headers and bodies from the
document, in positive mode (what the document allows) and negative mode (what it does not). Left
alone, nearly every case would stop at the first gate (a made-up token is 401, a made-up entity
set 404), so each drawn case may have parts replaced by values that reach deeper: a real token
(or the admin key, or none), a real entity set, row id and column, an OData $filter / $select /
$orderby built from the table's columns, Prefer and precondition headers, row bodies made of the
table's columns with hostile values, and $batch bodies made of real requests.

The admin routes that change how the server behaves (faults, clock, run, privileges, activity) are
fuzzed without the admin key only: with it, a drawn fault rate or clock would change every later
answer, and the run would no longer be judging the server but its own settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from fuzz import conformance
from fuzz.context import ROOT, SYSTEM_COLUMNS, Context, TableInfo
from fuzz.run import Step
from fuzz.wire import Header, Request

MUTATING_ADMIN = frozenset({("PUT", "/_syncsim/faults"), ("PUT", "/_syncsim/clock"), ("POST", "/_syncsim/run"),
                            ("POST", "/_syncsim/privileges"), ("PUT", "/_syncsim/activity")})
DROPPED_HEADERS = frozenset({"user-agent", "accept-encoding", "connection", "x-schemathesis-testcaseid", "accept"})
CASTS = ("Microsoft.Dynamics.CRM.StringAttributeMetadata", "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
         "Microsoft.Dynamics.CRM.LookupAttributeMetadata", "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
         "Microsoft.Dynamics.CRM.FileAttributeMetadata", "Microsoft.Dynamics.CRM.NopeAttributeMetadata")
IDEMPOTENCY_KEYS = ("k-1", "k-2", "k-3")  # a small pool, so drawn writes reuse keys (replays and 422s)


@dataclass(frozen=True)
class Operation:
    """One documented operation and schemathesis' API operation for it."""

    method: str  # upper case
    template: str
    api: Any  # schemathesis APIOperation

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def admin(self) -> bool:
        return self.template.startswith("/_syncsim")


@lru_cache(maxsize=1)
def operations() -> tuple[Operation, ...]:
    """Every documented operation, in the document's order."""
    schema = schemathesis.openapi.from_path(str(conformance.SPEC_PATH))
    out = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise RuntimeError(f"{conformance.SPEC_PATH}: an operation schemathesis cannot read: {result.err()}")
        api = result.ok()
        out.append(Operation(api.method.upper(), api.path, api))
    return tuple(out)


def operation(label: str) -> Operation:
    return next(op for op in operations() if op.label == label)


# --- values ----------------------------------------------------------------------------------------
NUMBERS = ("0", "1", "-1", "2147483647", "2147483648", "9223372036854775808", "18446744073709551616",
           "1e308", "1.5", "-0", "00", "١٢", "1_000")
WEIRD_TEXT = st.sampled_from(["", "'", "''", "\\", "%", "%00", "\u0000", "é", "😀", "\u202e", "a" * 300, "x'; drop",
                              "null", "true", "{}", "[]", "$1", "../..", "\r\nX-Injected: 1"])


def text() -> st.SearchStrategy[str]:
    return st.one_of(WEIRD_TEXT, st.text(max_size=20))


def json_values(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                     st.floats(allow_nan=False, allow_infinity=False), text(),
                     st.sampled_from(["2024-01-02T03:04:05Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z",
                                      "2024-02-30", "0a1b2c3d-0000-4000-8000-000000000001"]))
    def nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.lists(inner, max_size=3), st.dictionaries(text(), inner, max_size=3))

    return st.recursive(leaf, nest, max_leaves=depth * 3)


def row_ids(ctx: Context, info: TableInfo | None) -> st.SearchStrategy[str]:
    known: list[str] = []
    if info is not None:
        known = info.own + info.foreign + info.hidden + info.own_files + info.foreign_files + list(info.alternate.values())
    variants = [i.upper() for i in known[:2]] + [f"{{{i}}}" for i in known[:2]]
    made_up = ["0a1b2c3d-0000-4000-8000-0000000000ff", "00000000-0000-0000-0000-000000000000", "not-a-guid", "'x'", "1",
               # alternate keys: unknown ones, malformed ones, numbers that are not
               "accountnumber='A-1'", "name='x''y'", "x=1,x=2", "a=", "=1", "name=nan", "name=1e999", "name='unterminated",
               "msdyn_duration=²", "name='a',"]
    return st.sampled_from(known + variants + made_up) if known else st.sampled_from(made_up)


def literal(ctx: Context, kind: str) -> st.SearchStrategy[str]:
    """An OData literal, usually of the column's kind, sometimes of another or malformed."""
    by_kind = {
        "text": st.builds(lambda s: "'" + s.replace("'", "''") + "'", text()),
        "integer": st.sampled_from(NUMBERS),
        "decimal": st.sampled_from(NUMBERS + ("1.25", "-3.5e2")),
        "choice": st.sampled_from(("1", "2", "3", "999", "-1")),
        "datetime": st.sampled_from(("2024-01-02T03:04:05Z", "2024-01-02", "2024-01-02T03:04:05+05:30",
                                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-13-01",
                                     "2024-01-02T25:00:00Z")),
        "guid": st.sampled_from(("0a1b2c3d-0000-4000-8000-0000000000ff", "00000000-0000-0000-0000-000000000000",
                                 "'0a1b2c3d-0000-4000-8000-0000000000ff'")),
        "other": st.sampled_from(("null", "true", "false", "'x'", "1", "Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'",
                                  '"dq"', "[1]", "@p")),
    }
    return st.one_of(by_kind.get(kind, by_kind["other"]), by_kind["other"])


def _kinds(info: TableInfo) -> dict[str, str]:
    kinds = {info.primary_name: "text", "description": "text", info.id_column: "guid", "createdon": "datetime",
             "modifiedon": "datetime", "versionnumber": "integer", "_ownerid_value": "guid", "ownerid": "guid"}
    for col, kind in info.columns.items():
        if kind == "lookup":
            kinds[col] = kinds[f"_{col}_value"] = "guid"
        elif kind == "file":
            kinds.update({col: "guid", f"{col}_name": "text", f"{col}_size": "integer"})
        else:
            kinds[col] = kind
    return kinds


def filters(ctx: Context, info: TableInfo) -> st.SearchStrategy[str]:
    """OData $filter text over the table's columns: comparisons, string functions, In/NotIn, and, or,
    not and parentheses, with literals of every kind (some of them out of range or malformed)."""
    kinds = _kinds(info)
    names = st.sampled_from([*kinds, "nope", "Name", "_nope_value"])

    @st.composite
    def comparison(draw: st.DrawFn) -> str:
        name = draw(names)
        op = draw(st.sampled_from(("eq", "ne", "gt", "ge", "lt", "le", "EQ", "eq eq")))
        return f"{name} {op} {draw(literal(ctx, kinds.get(name, 'other')))}"

    @st.composite
    def call(draw: st.DrawFn) -> str:
        fn = draw(st.sampled_from(("contains", "startswith", "endswith", "substringof", "tolower")))
        return f"{fn}({draw(names)},{draw(literal(ctx, 'text'))})"

    @st.composite
    def in_list(draw: st.DrawFn) -> str:
        fn = draw(st.sampled_from(("In", "NotIn")))
        name = draw(names)
        values = draw(st.lists(literal(ctx, kinds.get(name, "other")), max_size=3))
        quoted = ",".join(v if v.startswith("'") else f"'{v}'" for v in values)
        return f"Microsoft.Dynamics.CRM.{fn}(PropertyName='{name}',PropertyValues=[{quoted}])"

    def combined(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.builds(lambda a, b: f"{a} and {b}", inner, inner),
                         st.builds(lambda a, b: f"{a} or {b}", inner, inner),
                         st.builds(lambda a: f"not {a}", inner), st.builds(lambda a: f"({a})", inner))

    leaf = st.one_of(comparison(), comparison(), call(), in_list(), st.sampled_from(("true", "false", "null", "name")))
    return st.recursive(leaf, combined, max_leaves=6)


def selects(info: TableInfo) -> st.SearchStrategy[str]:
    names = [*info.readable_columns, "nope", "", " ", "*"]
    return st.lists(st.sampled_from(names), min_size=1, max_size=4).map(",".join)


def orderbys(info: TableInfo) -> st.SearchStrategy[str]:
    names = [*info.readable_columns, "nope"]
    item = st.builds(lambda n, d: f"{n}{d}", st.sampled_from(names), st.sampled_from(("", " asc", " desc", " sideways")))
    return st.lists(item, min_size=1, max_size=3).map(",".join)


def expands(ctx: Context, info: TableInfo) -> st.SearchStrategy[str]:
    """Row $expand: the table's lookups (single-valued), the lookups of other tables to it
    (collection-valued `<this>_<other>_<column>`), with nested options, `/$ref`, and names that are
    not navigation properties."""
    single = list(info.lookups)
    many = []
    for other in ctx.tables.values():
        scenario_table = ctx.server.scenario.table(other.logical)
        many += [f"{info.logical}_{other.logical}_{c.name}" for c in scenario_table.columns
                 if c.type == "lookup" and c.target == info.logical]
    names = st.sampled_from([*single, *many, info.primary_name, "nope", "ownerid", *(n.upper() for n in single[:1])])
    nested = st.sampled_from(("", "($select=name)", f"($select={info.primary_name},nope)", "($top=2)", "($orderby=name desc)",
                              "($filter=name ne null)", "($select=name;$top=1)", "($expand=x)", "($skip=1)", "/$ref",
                              "($count=true)", "(", "($select=)"))
    item = st.builds(lambda n, o: n + o, names, nested)
    return st.lists(item, min_size=1, max_size=3).map(",".join)


def prefers() -> st.SearchStrategy[str]:
    item = st.one_of(
        st.builds(lambda n: f"odata.maxpagesize={n}", st.sampled_from(("1", "2", "7", "5000", "5001", "0", "-1", "x", "",
                                                                       "99999999999999999999"))),
        st.sampled_from(('odata.include-annotations="*"', "odata.maxpagesize=3",
                         'odata.include-annotations="OData.Community.Display.V1.FormattedValue"',
                         'odata.include-annotations="-*"', "return=representation", "return=minimal",
                         "odata.continue-on-error", "respond-async", 'odata.include-annotations="', "=", ",,,")))
    tracked = st.lists(st.one_of(item, st.just("odata.track-changes")), min_size=1, max_size=3).map(",".join)
    return st.one_of(st.lists(item, min_size=1, max_size=3).map(",".join), tracked)


def row_bodies(ctx: Context, info: TableInfo) -> st.SearchStrategy[dict[str, Any]]:
    """Row bodies: the table's columns (and system ones, lookups, binds, annotations) with values of
    every JSON type."""
    targets = {t.logical: t for t in ctx.tables.values()}
    scenario_table = ctx.server.scenario.table(info.logical)
    binds: list[str] = []
    for col in info.lookups:
        column = scenario_table.column(col)
        target = targets.get(column.target or "") if column is not None else None
        if target is not None:
            ids = (target.own + target.foreign)[:2]
            binds += [f"/{target.set_name}({i})" for i in ids] + [f"/{target.set_name}(0a1b2c3d-0000-4000-8000-0000000000ff)",
                                                                 f"{target.set_name}({ids[0] if ids else 'x'})", "/nope(1)"]
    keys = [info.primary_name, "description", info.id_column, *info.columns, *SYSTEM_COLUMNS, "nope", "@odata.type",
            "x@odata.type", "ownerid@odata.bind", *(f"{c}@odata.bind" for c in info.lookups),
            *(f"_{c}_value" for c in info.lookups)]
    typed = {
        **{c: st.sampled_from(binds or ["/nope(1)"]) for c in (f"{c}@odata.bind" for c in info.lookups)},
        "ownerid@odata.bind": st.sampled_from([f"/systemusers({u})" for u in ctx.user_ids.values()] + ["/systemusers(x)"]),
        info.id_column: st.one_of(st.just(ctx.new_guid()), row_ids(ctx, info)),
        "@odata.type": st.sampled_from((f"Microsoft.Dynamics.CRM.{info.logical}", "#Microsoft.Dynamics.CRM.nope")),
    }

    @st.composite
    def body(draw: st.DrawFn) -> dict[str, Any]:
        chosen = draw(st.lists(st.sampled_from(keys), min_size=0, max_size=4, unique=True))
        out: dict[str, Any] = {}
        for key in chosen:
            out[key] = draw(st.one_of(typed[key], json_values()) if key in typed else json_values())
        return out
    return body()


def batch_bodies(ctx: Context, info: TableInfo) -> st.SearchStrategy[tuple[str, bytes]]:
    """(boundary, body) of a $batch of real requests: reads, writes, changesets, Content-ID references."""
    crlf = "\r\n"
    row = (info.own + info.foreign + ["0a1b2c3d-0000-4000-8000-0000000000ff"])[0]
    reads = st.sampled_from([f"GET {info.set_name} HTTP/1.1", f"GET {ROOT}/{info.set_name}?$top=2 HTTP/1.1",
                             f"GET {info.set_name}({row}) HTTP/1.1", f"GET {info.set_name}/$count HTTP/1.1",
                             "GET nope HTTP/1.1", f"GET {info.set_name}({row})/{(info.file_columns or ['x'])[0]}/$value HTTP/1.1",
                             "GET EntityDefinitions HTTP/1.1", "GET $1 HTTP/1.1"])
    writes = st.builds(lambda line, b: (line, b), st.sampled_from([
        f"POST {info.set_name} HTTP/1.1", f"PATCH {info.set_name}({row}) HTTP/1.1", f"DELETE {info.set_name}({row}) HTTP/1.1",
        "PATCH $1 HTTP/1.1", f"POST {info.set_name}/Microsoft.Dynamics.CRM.CreateMultiple HTTP/1.1", "PUT x HTTP/1.1"]),
        row_bodies(ctx, info))

    def part(line: str, body: dict[str, Any] | None, cid: int | None) -> str:
        mime = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"] + ([f"Content-ID: {cid}"] if cid else [])
        inner = [line] + (["Content-Type: application/json"] if body is not None else [])
        return crlf.join([*mime, "", *inner, "", json.dumps(body) if body is not None else ""]) + crlf

    @st.composite
    def batch(draw: st.DrawFn) -> tuple[str, bytes]:
        boundary = draw(st.sampled_from(("batch_1", "b", "x-y.z", "=?")))
        out = []
        cid = 0
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            if draw(st.booleans()):
                out.append(part(draw(reads), None, None))
            else:
                items = []
                for _ in range(draw(st.integers(min_value=1, max_value=3))):
                    cid += 1
                    line, body = draw(writes)
                    items.append(part(line, body, cid))
                if draw(st.booleans()):
                    inner = "".join(f"--cs{cid}{crlf}{p}" for p in items) + f"--cs{cid}--{crlf}"
                    out.append(f"Content-Type: multipart/mixed; boundary=cs{cid}{crlf}{crlf}{inner}")
                else:
                    out += items
        text_body = "".join(f"--{boundary}{crlf}{p}" for p in out) + f"--{boundary}--{crlf}"
        return boundary, text_body.encode()
    return batch()


# --- the case ---------------------------------------------------------------------------------------
def _who(op: Operation) -> st.SearchStrategy[str]:
    if (op.method, op.template) in MUTATING_ADMIN:
        return st.sampled_from(("main", "peer", "forged", "none", "drawn"))
    if op.admin:
        return st.sampled_from(("admin", "admin", "admin", "main", "forged", "drawn"))
    return st.sampled_from(("main",) * 7 + ("peer", "peer", "other", "other", "admin", "forged", "none", "drawn"))


def _table_for(ctx: Context, op: Operation, draw: st.DrawFn) -> TableInfo:
    tables = list(ctx.tables.values())
    if "{column}" in op.template:
        with_files = [t for t in tables if t.file_columns]
        tables = with_files or tables
    result: TableInfo = draw(st.sampled_from(tables))
    return result


@st.composite
def generated(draw: st.DrawFn, op: Operation, ctx: Context, mode: GenerationMode) -> Request:
    """One request for an operation: schemathesis' draw with parts replaced by the server's data."""
    case = draw(op.api.as_strategy(generation_mode=mode))
    real = draw(st.integers(min_value=0, max_value=9)) < 8  # most cases aim at real data
    info = _table_for(ctx, op, draw)
    params = case.path_parameters if case.path_parameters is not None else {}
    if real:
        if "set" in params:
            params["set"] = info.set_name
        if "id" in params:
            params["id"] = draw(row_ids(ctx, info))
        if "column" in params:
            columns = [*info.file_columns, info.primary_name, "description", info.id_column, "versionnumber", "nope"]
            params["column"] = draw(st.sampled_from(columns))
        if "key" in params:
            params["key"] = draw(st.sampled_from((f"LogicalName='{info.logical}'", ctx.metadata_id(info.logical),
                                                  "LogicalName='nope'", f"LogicalName='{info.logical}''x'",
                                                  "LogicalName=nope", "0a1b2c3d-0000-4000-8000-0000000000ff")))
        if "cast" in params and draw(st.booleans()):
            params["cast"] = draw(st.sampled_from(CASTS))
        case.path_parameters = params
        _steer_query(draw, case, ctx, info, op)
        _steer_headers(draw, case, ctx, info, op)
        _steer_body(draw, case, ctx, info, op)
    who = draw(_who(op))
    return _request(case, ctx, who)


def _chance(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws. Hypothesis favours the simplest choice (the first), so the
    first is False: a choice left to its simplest value keeps the request plain."""
    return bool(draw(st.sampled_from((False,) * (one_in - 1) + (True,))))


def _steer_query(draw: st.DrawFn, case: Any, ctx: Context, info: TableInfo, op: Operation) -> None:
    """The drawn query is usually dropped first, so the steered options are judged on their own (one
    drawn `$deltatoken` makes a read change-tracked, and then most other options are refused)."""
    query = case.query if case.query is not None and _chance(draw, 4) else {}
    documented = {p.name for p in op.api.iter_parameters() if p.location == "query"}
    tokens = ctx.paging_tokens(info)
    users = [*ctx.user_ids, "backoffice", "nobody", ""]
    choices: dict[str, tuple[int, Callable[[], st.SearchStrategy[str]]]] = {
        "user": (1, lambda: st.sampled_from(users)),  # GET /_syncsim/snapshot
        "$filter": (2, lambda: filters(ctx, info) if not op.template.startswith(f"{ROOT}/EntityDefinitions") else
                    st.sampled_from(("LogicalName eq 'account'", "ChangeTrackingEnabled eq true", "LogicalName eq",
                                     "IsCustomEntity eq 1", "AttributeType eq 'String'", "contains(LogicalName,'a')"))),
        "$select": (3, lambda: selects(info)),
        "$orderby": (3, lambda: orderbys(info)),
        "$top": (4, lambda: st.sampled_from(NUMBERS + ("", "x", "²"))),
        "$count": (4, lambda: st.sampled_from(("true", "false", "TRUE", "1"))),
        "$skiptoken": (8, lambda: st.sampled_from(tokens.skip + ["i.0.x", "d.1.2.u.x", "garbage",
                                                                 '<cookie pagenumber="2" pagingcookie="x" />'])),
        "$deltatoken": (8, lambda: st.sampled_from(tokens.delta + ["1000!01/01/2030 00:00:00", "garbage",
                                                                   "1!01/01/1970 00:00:00"])),
        "$expand": (4, lambda: expands(ctx, info) if op.template.startswith(f"{ROOT}/{{set}}") else
                    st.sampled_from(("Attributes", "Attributes($select=LogicalName)", "OptionSet($select=Options)",
                                     "GlobalOptionSet", "Keys", "Attributes($filter=x)", "x"))),
    }
    for name in sorted(documented & choices.keys()):
        one_in, strategy = choices[name]
        if _chance(draw, one_in):
            query[name] = draw(strategy())
    if _chance(draw, 15):  # an option the route does not know
        query[draw(st.sampled_from(("$skip", "$apply", "fetchXml", "$nope", "x")))] = "1"
    case.query = query


def _steer_headers(draw: st.DrawFn, case: Any, ctx: Context, info: TableInfo, op: Operation) -> None:
    documented = {p.name.lower() for p in op.api.iter_parameters() if p.location == "header"}
    headers = case.headers
    if not _chance(draw, 3):  # usually drop the drawn optional headers (the credential is chosen later)
        for name in [k for k in headers if k.lower() in documented]:
            del headers[name]
    elif not _chance(draw, 4):  # a drawn idempotency key is short and soon reused by another request: 422
        headers.pop("x-syncsim-idempotency-key", None)
    row = (info.own + info.foreign or ["0a1b2c3d-0000-4000-8000-0000000000ff"])[0]
    values: dict[str, tuple[int, st.SearchStrategy[str]]] = {
        "prefer": (2, prefers()),
        "if-match": (3, st.sampled_from(("*", ctx.etag(info.logical, row), ctx.etag(info.logical, row, -1), 'W/"1"', "soon"))),
        "if-none-match": (4, st.sampled_from(("*", "null", ctx.etag(info.logical, row), 'W/"1"'))),
        "x-syncsim-base-version": (5, st.sampled_from(("1", "0", str(10**30), "x", "-1"))),
        "x-syncsim-idempotency-key": (6, st.one_of(st.sampled_from(IDEMPOTENCY_KEYS), st.builds(lambda: ctx.unique("key")))),
        "x-syncsim-device-id": (4, st.sampled_from((f"dev-{ctx.main}", f"dev-{ctx.peer}", ""))),
        "range": (2, st.sampled_from(("bytes=0-9", "bytes=-5", "bytes=3-", "bytes=0-0", "bytes=999999999-", "bytes=5-1"))),
        "x-ms-file-name": (2, st.sampled_from(("a.txt", "../x", "", "é.bin"))),
        "content-range": (3, st.sampled_from(("bytes 0-2/3", "bytes 0-0/1", "bytes 3-5/6", "bytes 0-9/5"))),
    }
    for name, (one_in, strategy) in values.items():
        if name in documented and _chance(draw, one_in):
            headers[name] = draw(strategy)
    if not op.admin and _chance(draw, 5):
        headers["x-syncsim-device-id"] = draw(values["x-syncsim-device-id"][1])


def _steer_body(draw: st.DrawFn, case: Any, ctx: Context, info: TableInfo, op: Operation) -> None:
    if draw(st.integers(min_value=0, max_value=2)) == 0:
        return  # keep schemathesis' body
    template = op.template
    kind = f"Microsoft.Dynamics.CRM.{info.logical}"
    if template in (f"{ROOT}/{{set}}", f"{ROOT}/{{set}}({{id}})") and op.method in ("POST", "PATCH"):
        case.body = draw(row_bodies(ctx, info))
    elif template.endswith(("CreateMultiple", "UpdateMultiple", "UpsertMultiple")):
        targets = draw(st.lists(row_bodies(ctx, info), min_size=0, max_size=3))
        for target in targets:
            if draw(st.booleans()):
                target.setdefault("@odata.type", kind)
        case.body = {"Targets": targets}
    elif template == f"{ROOT}/BulkDelete":
        ids = draw(st.lists(row_ids(ctx, info), max_size=3))
        case.body = {"QuerySet": [{"EntityName": draw(st.sampled_from((info.logical, "nope"))), "Criteria": {
            "FilterOperator": "And", "Conditions": [{"AttributeName": draw(st.sampled_from((info.id_column, "name"))),
                                                    "Operator": "In", "Values": [{"Value": i} for i in ids]}]}}]}
    elif template == f"{ROOT}/$batch":
        boundary, body = draw(batch_bodies(ctx, info))
        case.body = body
        case.headers["Content-Type"] = f"multipart/mixed; boundary={boundary}"
    elif template.endswith("{column}") and op.method == "PATCH":
        case.body = draw(st.binary(max_size=64))
    elif template == "/_syncsim/token":
        case.body = {"user": draw(st.sampled_from([*ctx.user_ids, "backoffice", "nobody"]))}


def _request(case: Any, ctx: Context, who: str) -> Request:
    kwargs = case.as_transport_kwargs(base_url="http://fuzz")
    path = quote(urlsplit(kwargs["url"]).path, safe="/:@!$&'()*+,;=%-._~")  # escapes kept, the rest encoded
    params = kwargs.get("params") or {}
    if params:
        path += "?" + "&".join(f"{quote(str(k), safe='$')}={quote(str(v), safe='')}" for k, v in params.items())
    headers: list[Header] = [(k, v) for k, v in kwargs["headers"].items()
                             if k.lower() not in DROPPED_HEADERS and k.lower() != "authorization"]
    drawn = kwargs["headers"].get("Authorization")
    credential: str | None = None
    if who in ("main", "peer", "other", "admin"):
        credential = f"Bearer {ctx.token(who)}"
    elif who == "forged":
        credential = "Bearer forged-token"
    elif who == "drawn" and drawn is not None:
        credential = drawn
    if credential is not None:
        headers.insert(0, ("Authorization", credential))
    body: bytes | None = None
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    if body is not None and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", case.media_type or "application/json"))
    name = {"main": ctx.main, "peer": ctx.peer, "other": ctx.other}.get(who, who)
    return Request(case.method.upper(), path, headers, body, who=name)


def step(request: Request) -> Step:
    """A generated request judged without an expected status: no 5xx, a conforming answer, and a 4xx
    (or a GET) that changes nothing."""
    return Step(request, expect=None)
