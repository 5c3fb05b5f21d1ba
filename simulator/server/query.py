"""Plain (not change-tracked) collection queries: $select, $filter, $orderby, $top, $count, paging.

Rows are those the user's read privilege allows (never the offline profile). Without $orderby rows
come in primary-id order; with it, by the listed columns and then the primary id. A page resumes
after the last served row's (sort values, id), carried in a Dataverse-shaped `$skiptoken` cookie, so
paging survives concurrent writes without serving a row twice. `$top` caps the rows served over all
pages, also under `odata.maxpagesize`. `$skip` and the other options syncsim lacks are a 400. `$expand`
is parsed and applied by simulator/server/expand.py, which hands run_query the `RowExtras` that add
the navigation properties to each row. Sorted, filtered id lists and counts are cached per (user,
table, store version, query).
"""

from __future__ import annotations

import base64
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote, unquote, unquote_plus

import orjson
from aiohttp import web

from simulator.protocol import ErrorCode, H
from simulator.protocol.odata import JSON_CONTENT_TYPE, MAX_PAGE_SIZE
from simulator.server.errors import DataverseError
from simulator.server.handlers.common import page_size, parse_select, project, root_url, state_of, user_of
from simulator.server.odata_filter import Field, Predicate, compile_filter, normalizer, parse_filter
from simulator.server.state import LRU, ServerState
from simulator.server.store import Row, TableStore, User, lookup_key

SortKey = tuple[Any, ...]
_UNSUPPORTED = ("$apply", "$search", "$compute", "$format", "$levels", "$index",
                "fetchXml", "sql", "savedQuery", "userQuery")
_KNOWN = ("$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$expand")  # $expand: expand.py
_KINDS = {"text": "string", "integer": "integer", "decimal": "decimal", "datetime": "datetime", "choice": "integer"}
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
TOTAL = "Microsoft.Dynamics.CRM.totalrecordcount"
TOTAL_EXCEEDED = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"


# --- columns ---------------------------------------------------------------------------------------
def row_fields(table: TableStore) -> dict[str, Field]:
    """Every filterable and sortable column of a table, by wire name (lookups also by bare name)."""
    meta, users = table.meta, table.users

    def value(key: str) -> Field:
        return Field("string", lambda r: r.values.get(key))

    out = {name: value(name) for name in (meta.primary_name, "description")}
    out |= {c: Field("datetime", value(c).get) for c in ("createdon", "modifiedon")}
    out[meta.id_column] = Field("guid", lambda r: r.id)
    out["versionnumber"] = Field("integer", lambda r: r.version)
    out["_ownerid_value"] = out["ownerid"] = Field(
        "guid", lambda r: users[r.owner].id if 0 <= r.owner < len(users) else None)
    for c in meta.columns:
        if c.type == "lookup":
            out[lookup_key(c.name)] = out[c.name] = Field("guid", value(lookup_key(c.name)).get)
        elif c.type == "file":
            out |= _file_fields(c.name)
        else:
            out[c.name] = Field(_KINDS[c.type], value(c.name).get)
    return out


def _file_fields(col: str) -> dict[str, Field]:
    def part(kind: str, attr: str) -> Field:
        return Field(kind, lambda r: getattr(f, attr) if r.files and (f := r.files.get(col)) else None)

    return {col: part("guid", "file_id"), f"{col}_name": part("string", "name"), f"{col}_size": part("integer", "size")}


def resolver(table: TableStore, fields: dict[str, Field]) -> Callable[[str], Field]:
    """Field lookup by name; 400 Dataverse-style for a property the table does not have."""
    def resolve(name: str) -> Field:
        field = fields.get(name)
        if field is None:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"Could not find a property named '{name}' on type "
                                 f"'Microsoft.Dynamics.CRM.{table.meta.logical_name}'.")
        return field
    return resolve


# --- options ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Query:
    """The parsed query options of one request."""

    select: list[str] | None
    filter_text: str
    predicate: Predicate | None
    order: tuple[tuple[Field, bool], ...]  # (column, descending)
    order_text: str
    top: int | None
    count: bool


def parse_query(request: web.Request, table: TableStore) -> Query:
    """The request's query options, validated (400 for unknown columns, bad syntax, unsupported options)."""
    q = request.query
    if "$skip" in q:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "Skip Clause is not supported in CRM")
    for name in q:
        if name in _UNSUPPORTED or (name.startswith("$") and name not in _KNOWN):
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The query parameter '{name}' is not supported by syncsim.")
    resolve = resolver(table, row_fields(table))
    text = q.get("$filter", "")
    predicate = compile_filter(parse_filter(text), resolve) if text.strip() else None
    order_text = q.get("$orderby", "")
    return Query(parse_select(table, q.get("$select")), text, predicate, parse_orderby(order_text, resolve),
                 order_text, parse_top(q.get("$top")), q.get("$count", "false").lower() == "true")


def parse_orderby(text: str, resolve: Callable[[str], Field]) -> tuple[tuple[Field, bool], ...]:
    out: list[tuple[Field, bool]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"Syntax error in $orderby at '{item}'.")
        out.append((resolve(words[0]), len(words) == 2 and words[1].lower() == "desc"))
    return tuple(out)


def parse_top(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.strip().isascii() and raw.strip().isdigit()):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"Invalid value '{raw}' for $top; expected a non-negative integer.")
    return int(raw)


# --- sorting and selection -------------------------------------------------------------------------
class _Desc:
    """Reverses the order of a sort-key part (for `desc` columns)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __lt__(self, other: _Desc) -> bool:
        return other.v < self.v

    __hash__ = None  # type: ignore[assignment]


def key_maker(query: Query) -> Callable[[Iterable[Any], str], SortKey]:
    """A function from the raw $orderby values and the row id to (parts..., id).

    Nulls sort first ascending and last descending; text compares case-insensitively.
    """
    steps = [(normalizer(field.kind), desc) for field, desc in query.order]

    def make(raws: Iterable[Any], row_id: str) -> SortKey:
        parts: list[Any] = []
        for (norm, desc), raw in zip(steps, raws, strict=True):
            v = norm(raw)
            part = (0,) if v is None else (1, v)
            parts.append(_Desc(part) if desc else part)
        return (*parts, row_id)
    return make


def _cache(state: ServerState) -> LRU:
    return state.query_cache


def _visible(state: ServerState, table: TableStore, user: User) -> list[Row]:
    """The rows the user may read now, in id order (cached until the next write)."""
    return state.access.sorted_visible(user, table, False, state.store.version)


def _visible_rows(state: ServerState, table: TableStore, user: User) -> Iterator[Row]:
    return iter(_visible(state, table, user))


def _sorted_keys(state: ServerState, table: TableStore, user: User, query: Query) -> list[SortKey]:
    """Sort keys of every matching row, in order (cached per store version)."""
    key = ("sorted", user.index, table.meta.logical_name, state.store.version, query.filter_text, query.order_text)
    hit = _cache(state).get(key)
    if hit is None:
        rows = _visible_rows(state, table, user)
        matching = rows if query.predicate is None else filter(query.predicate, rows)
        make, getters = key_maker(query), [field.get for field, _ in query.order]
        hit = _cache(state).put(key, sorted(make([get(r) for get in getters], r.id) for r in matching))
    return hit


def count_matching(state: ServerState, table: TableStore, user: User, query: Query) -> int:
    """How many visible rows match the $filter (cached per store version)."""
    if query.predicate is None:
        return len(_visible(state, table, user))
    key = ("count", user.index, table.meta.logical_name, state.store.version, query.filter_text)
    hit = _cache(state).get(key)
    if hit is None:
        hit = _cache(state).put(key, sum(1 for row in _visible_rows(state, table, user) if query.predicate(row)))
    return int(hit)


def select_page(state: ServerState, table: TableStore, user: User, query: Query,
                after: SortKey | None, limit: int) -> tuple[list[Row], bool]:
    """Up to `limit` matching rows after the cursor key, and whether more follow."""
    if limit <= 0:
        return [], False
    if query.order:
        keys = _sorted_keys(state, table, user, query)
        start = bisect_right(keys, after) if after is not None else 0
        rows = table.rows
        candidates: Iterator[Row | None] = (rows.get(k[-1]) for k in keys[start : start + limit + 1])
        predicate = None
    else:
        visible = _visible(state, table, user)
        start = bisect_right(visible, after[-1], key=_row_id) if after is not None else 0
        candidates, predicate = (visible[i] for i in range(start, len(visible))), query.predicate
    out: list[Row] = []
    for row in candidates:
        if row is not None and (predicate is None or predicate(row)):
            if len(out) == limit:
                return out, True
            out.append(row)
    return out, False


def _row_id(row: Row) -> str:
    return row.id


# --- paging cookie ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: its number (1-based), rows served before it, the last row served."""

    page: int
    served: int
    last_id: str
    last_values: list[Any]  # raw values of the $orderby columns on the last row served


_OUTER = re.compile(r'pagenumber="(\d+)"\s+pagingcookie="([^"]*)"')
_INNER = re.compile(r'syncsim="([A-Za-z0-9_=-]*)"')


def encode_skiptoken(cursor: Cursor, id_column: str, first_id: str) -> str:
    """Dataverse's cookie shape; syncsim's resume state rides in the inner cookie's `syncsim` attribute."""
    data = base64.urlsafe_b64encode(orjson.dumps([cursor.served, cursor.last_id, cursor.last_values])).decode()
    inner = (f'<cookie page="{cursor.page - 1}" syncsim="{data}"><{id_column} last="{{{cursor.last_id.upper()}}}" '
             f'first="{{{first_id.upper()}}}" /></cookie>')
    return f'<cookie pagenumber="{cursor.page}" pagingcookie="{quote(inner, safe="")}" istracking="False" />'


def decode_skiptoken(raw: str | None, query: Query) -> Cursor | None:
    """The cursor in a $skiptoken made by encode_skiptoken for this query; 400 for anything else (also
    for $orderby values no row of the query could have, such as a date-time outside the calendar)."""
    if not raw:
        return None
    cursor = _cursor(raw)
    if cursor is None or len(cursor.last_values) != len(query.order) or not all(
            v is None or normalizer(field.kind)(v) is not None for (field, _), v in zip(query.order, cursor.last_values,
                                                                                      strict=True)):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $skiptoken '{raw}' is not valid for this query.")
    return cursor


def _cursor(raw: str) -> Cursor | None:
    outer = _OUTER.search(raw)
    inner = _INNER.search(unquote(outer.group(2))) if outer else None
    if outer is None or inner is None:
        return None
    try:
        served, last_id, values = orjson.loads(base64.urlsafe_b64decode(inner.group(1)))
    except (ValueError, TypeError):
        return None
    valid = isinstance(served, int) and isinstance(last_id, str) and isinstance(values, list)
    return Cursor(int(outer.group(1)), served, last_id, values) if valid else None


def next_link(request: web.Request, table: TableStore, token: str) -> str:
    """The absolute URL of the next page: the request's own query options plus the new $skiptoken."""
    kept = [p for p in request.rel_url.raw_query_string.split("&")
            if p and unquote_plus(p.partition("=")[0]) != "$skiptoken"]
    kept.append("$skiptoken=" + quote(token, safe="=/"))
    return f"{root_url(request)}{table.meta.set_name}?{'&'.join(kept)}"


# --- annotations -----------------------------------------------------------------------------------
def annotation_matcher(prefs: dict[str, str]) -> Callable[[str], bool] | None:
    """Prefer odata.include-annotations as a test on annotation names (`*` wildcards, `-` excludes)."""
    raw = prefs.get("odata.include-annotations")
    if raw is None:
        return None
    patterns = [p.strip().lower() for p in raw.split(",") if p.strip()]
    include = [p for p in patterns if not p.startswith("-")]
    exclude = [p[1:] for p in patterns if p.startswith("-")]

    def wants(name: str) -> bool:
        low = name.lower()
        return any(fnmatchcase(low, p) for p in include) and not any(fnmatchcase(low, p) for p in exclude)
    return wants


Annotate = Callable[[Any], dict[str, Any]]


def annotators(state: ServerState, table: TableStore, wants: Callable[[str], bool]) -> dict[str, Annotate]:
    """Per wire column, a function from its (non-null) value to the annotations to add beside it."""
    out: dict[str, Annotate] = {}
    for col in table.meta.columns:
        if col.type == "choice" and wants(FORMATTED):
            labels = {v: k for k, v in (col.options or {}).items()}
            out[col.name] = _choice_annotator(f"{col.name}@{FORMATTED}", labels)
        elif col.type == "lookup" and col.target in state.store.tables:
            target = state.store.tables[col.target]
            found = _lookup_annotator(lookup_key(col.name), col.name, col.target, wants,
                                      partial(_primary_name, target))
            out.update({lookup_key(col.name): found} if found else {})
    users = state.store.users_by_id
    owner = _lookup_annotator("_ownerid_value", "ownerid", "systemuser", wants,
                              lambda v: users[v].name if v in users else None)
    return {**out, "_ownerid_value": owner} if owner else out


def _choice_annotator(key: str, labels: dict[int, str]) -> Annotate:
    """The formatted label of a choice value (the number as text when it has no label)."""
    return lambda v: {key: labels.get(v, str(v))}


def _primary_name(table: TableStore, row_id: Any) -> Any:
    row = table.rows.get(row_id)
    return row.values.get(table.meta.primary_name) if row is not None else None


def _lookup_annotator(key: str, navigation: str, logical: str, wants: Callable[[str], bool],
                      name_of: Callable[[Any], Any]) -> Annotate | None:
    """Annotations of a lookup value: navigation property, target table, target's primary name."""
    static = {f"{key}@{a}": v for a, v in ((NAVIGATION, navigation), (LOOKUP_NAME, logical)) if wants(a)}
    formatted = wants(FORMATTED)
    if not static and not formatted:
        return None
    return lambda v: {**static, f"{key}@{FORMATTED}": name_of(v)} if formatted else dict(static)


def annotate(wire: dict[str, Any], notes: dict[str, Annotate]) -> None:
    """Add, beside each non-null value that has an annotator, the annotations it asks for."""
    for key, value in list(wire.items()):
        if value is not None and key in notes:
            wire.update(notes[key](value))


# --- the response ----------------------------------------------------------------------------------
class RowExtras(Protocol):
    """What a request adds to each row it serves beyond its columns ($expand: navigation properties)."""

    def context_items(self) -> list[str]:
        """Items to add to the @odata.context select list, e.g. `msdyn_account(name)`."""
        ...

    def add(self, row: Row, wire: dict[str, Any]) -> None:
        """Add the row's extra properties to its wire dict."""
        ...


def context_columns(select: list[str] | None, extras: RowExtras | None) -> str:
    """The parenthesised select list of an @odata.context (empty without $select and extras)."""
    items = [*(select or ()), *(extras.context_items() if extras is not None else ())]
    return f"({','.join(items)})" if items else ""


async def run_query(request: web.Request, table: TableStore, prefs: dict[str, str],
                    extras: RowExtras | None = None) -> web.Response:
    """GET <set> without change tracking: one page of matching rows, with nextLink while more remain."""
    state, user = state_of(request), user_of(request)
    query = parse_query(request, table)
    size = page_size(request, prefs)
    cursor = decode_skiptoken(request.query.get("$skiptoken"), query)
    served = cursor.served if cursor else 0
    limit = size if query.top is None else min(size, query.top - served)
    after = key_maker(query)(cursor.last_values, cursor.last_id) if cursor else None
    rows, more = select_page(state, table, user, query, after, limit)
    more = more and (query.top is None or served + len(rows) < query.top)
    wants = annotation_matcher(prefs)
    head = _head(request, state, table, user, query, wants, extras)
    tail = {"@odata.nextLink": _continuation(request, table, query, cursor, rows)} if more else {}
    parts = _encode_rows(state, table, rows, query.select, wants, extras)
    body = orjson.dumps(head)[:-1] + b',"value":[' + b",".join(parts) + b"]" + (
        b"," + orjson.dumps(tail)[1:] if tail else b"}")
    state.counters.served(len(rows), len(body))
    return web.Response(body=body, headers=_headers(prefs, size))


def _head(request: web.Request, state: ServerState, table: TableStore, user: User, query: Query,
          wants: Callable[[str], bool] | None, extras: RowExtras | None) -> dict[str, Any]:
    """@odata.context, plus the counts under $count=true."""
    cols = context_columns(query.select, extras)
    head: dict[str, Any] = {"@odata.context": f"{root_url(request)}$metadata#{table.meta.set_name}{cols}"}
    if query.count:
        head.update(_count_head(count_matching(state, table, user, query), wants))
    return head


def _continuation(request: web.Request, table: TableStore, query: Query, cursor: Cursor | None,
                  rows: list[Row]) -> str:
    """The nextLink resuming after the last row of this page."""
    served = (cursor.served if cursor else 0) + len(rows)
    last = Cursor(cursor.page + 1 if cursor else 2, served, rows[-1].id, [f.get(rows[-1]) for f, _ in query.order])
    return next_link(request, table, encode_skiptoken(last, table.meta.id_column, rows[0].id))


def _count_head(total: int, wants: Callable[[str], bool] | None) -> dict[str, Any]:
    """@odata.count (capped at 5,000) and, if asked for, the totalrecordcount annotations."""
    head: dict[str, Any] = {"@odata.count": min(total, MAX_PAGE_SIZE)}
    if wants is not None and wants(TOTAL):
        head[f"@{TOTAL}"] = min(total, MAX_PAGE_SIZE)
    if wants is not None and wants(TOTAL_EXCEEDED):
        head[f"@{TOTAL_EXCEEDED}"] = total > MAX_PAGE_SIZE
    return head


def _encode_rows(state: ServerState, table: TableStore, rows: list[Row], select: list[str] | None,
                 wants: Callable[[str], bool] | None, extras: RowExtras | None = None) -> list[bytes]:
    """Each row as JSON bytes: projected to $select, with the annotations asked for and the extras."""
    notes = annotators(state, table, wants) if wants is not None else {}
    if select is None and not notes and extras is None:
        return [row.encoded(table) for row in rows]
    out: list[bytes] = []
    for row in rows:
        wire = project(table, row, select)
        annotate(wire, notes)
        if extras is not None:
            extras.add(row, wire)
        out.append(orjson.dumps(wire))
    return out


def _headers(prefs: dict[str, str], size: int) -> dict[str, str]:
    applied = [f"odata.maxpagesize={size}"] if "odata.maxpagesize" in prefs else []
    if "odata.include-annotations" in prefs:
        applied.append(f'odata.include-annotations="{prefs["odata.include-annotations"]}"')
    headers = {"Content-Type": JSON_CONTENT_TYPE, H.ODATA_VERSION: "4.0"}
    return {**headers, H.PREFERENCE_APPLIED: ",".join(applied)} if applied else headers
