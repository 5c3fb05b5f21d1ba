"""$expand on plain reads (GET <set> and GET <set>(<id>)): navigation properties of lookups.

Two kinds of navigation property (docs/protocol.md, "Reads"):
- single-valued: each lookup column `c` of the table is a navigation property named `c` (as in
  $metadata). It expands to the related row projected to its nested `$select` (with its
  `@odata.etag` and primary id), or null when the lookup is empty, the row is gone or the user may
  not read it. `c/$ref` expands to `{"@odata.id": "<root><set>(<id>)"}` instead.
- collection-valued: each lookup column `c` of a table `t` that points at this table gives this
  table a navigation property named `<this table>_<t>_<c>` (**choice**, after Dataverse's
  relationship schema names), listing the rows of `t` whose `c` is this row and that the user may
  read. Nested `$select`, `$filter`, `$orderby` and `$top` apply; at most 5,000 rows, never paged;
  `<name>@odata.nextLink` gives the same rows as a plain query on `t`'s set.

Limits and errors follow Dataverse's: at most 15 `$expand` options in a query; `$top` / `$orderby`
on a lookup are 400 `0x80060888` with Dataverse's text; `$ref` on a collection likewise. Nested
`$expand` and `$filter` on a lookup (which Dataverse allows) are refused by syncsim, as are the
options Dataverse does not support in `$expand` (`$skip`, `$count`, `$search`, `$levels`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from simulator.protocol import ErrorCode
from simulator.protocol.odata import MAX_PAGE_SIZE
from simulator.server.errors import DataverseError
from simulator.server.handlers.common import known_columns, parse_select, project, root_url, state_of, user_of
from simulator.server.odata_filter import compile_filter, parse_filter
from simulator.server.query import (
    Annotate,
    Query,
    annotate,
    annotation_matcher,
    annotators,
    key_maker,
    parse_orderby,
    parse_top,
    resolver,
    row_fields,
)
from simulator.server.state import ServerState
from simulator.server.store import Row, Store, TableStore, User, lookup_key

MAX_EXPANDS = 15  # Dataverse: "You can include up to 15 $expand options in a query."
MAX_RELATED = MAX_PAGE_SIZE  # rows per expanded collection-valued navigation property
# Dataverse's own texts (learn.microsoft.com/power-apps/developer/data-platform/webapi/query/join-tables)
ONLY_SELECT_AND_FILTER = ("Only $select and $filter clause can be provided while doing $expand on many-to-one "
                          "relationship or nested one-to-many relationship.")
REF_ONLY_ON_LOOKUPS = "Expand with $ref is only supported on lookup type navigation property."
_NOT_IN_DATAVERSE = ("$skip", "$count", "$search", "$levels")  # "aren't supported for the Dataverse Web API"
_ITEM = re.compile(r"(?P<name>[A-Za-z_]\w*)(?P<ref>/\$ref)?\s*(?:\((?P<options>.*)\))?", re.DOTALL)


# --- navigation properties -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Navigation:
    """A navigation property: its name, whether it is collection-valued, the table it leads to and the
    lookup column behind it (on this table when single-valued, on `target` when collection-valued)."""

    name: str
    collection: bool
    target: TableStore
    column: str


def collection_name(referenced: str, referencing: str, column: str) -> str:
    """The collection-valued side of lookup `column` of table `referencing` to table `referenced`."""
    return f"{referenced}_{referencing}_{column}"


def navigation_properties(store: Store, table: TableStore) -> dict[str, Navigation]:
    """Every navigation property of a table, by its (case-sensitive) name."""
    out: dict[str, Navigation] = {}
    for col in table.meta.columns:
        if col.type == "lookup" and col.target in store.tables:
            out[col.name] = Navigation(col.name, False, store.tables[col.target], col.name)
    for other in store.tables.values():
        for col in other.meta.columns:
            if col.type == "lookup" and col.target == table.meta.logical_name:
                name = collection_name(table.meta.logical_name, other.meta.logical_name, col.name)
                out[name] = Navigation(name, True, other, col.name)
    return out


# --- parsing ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Expansion:
    """One $expand item: the navigation property, `/$ref` or not, and its nested options."""

    nav: Navigation
    ref: bool
    query: Query  # nested $select / $filter / $orderby / $top (count unused)


def _bad(message: str) -> DataverseError:
    return DataverseError(ErrorCode.BAD_PAYLOAD, message)


def _refused(message: str) -> DataverseError:
    """Dataverse's code for query options it refuses (0x80060888, 400)."""
    return DataverseError(ErrorCode.TRACKING_QUERY_OPTION, message)


def split_top_level(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside parentheses and quoted strings, parts stripped; 400 if unbalanced."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted  # a doubled '' inside a string toggles twice
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _bad(f"Syntax error in $expand: unbalanced ')' at position {i} of '{text}'.")
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if depth or quoted:
        raise _bad(f"Syntax error in $expand: unclosed {'string' if quoted else 'parenthesis'} in '{text}'.")
    parts.append(text[start:].strip())
    return parts


def parse_expand(raw: str | None, store: Store, table: TableStore) -> tuple[Expansion, ...]:
    """$expand as Expansions, validated (400 as Dataverse answers, or as syncsim's choices)."""
    if raw is None or not raw.strip():
        return ()
    items = split_top_level(raw, ",")
    if len(items) > MAX_EXPANDS:
        raise _refused(f"The query has {len(items)} $expand options; at most {MAX_EXPANDS} are allowed.")
    navs = navigation_properties(store, table)
    out: list[Expansion] = []
    for item in items:
        expansion = _parse_item(item, navs, table)
        if any(e.nav.name == expansion.nav.name for e in out):
            raise _bad(f"The navigation property '{expansion.nav.name}' is expanded more than once.")
        out.append(expansion)
    return tuple(out)


def _parse_item(item: str, navs: dict[str, Navigation], table: TableStore) -> Expansion:
    m = _ITEM.fullmatch(item)
    if m is None:
        raise _bad(f"Syntax error in $expand at '{item}'.")
    name, type_name = m.group("name"), f"Microsoft.Dynamics.CRM.{table.meta.logical_name}"
    nav = navs.get(name)
    if nav is None:
        if name in known_columns(table):
            raise _bad(f"Property '{name}' on type '{type_name}' is not a navigation property or complex property. "
                       "Only navigation properties can be expanded.")
        raise _bad(f"Could not find a property named '{name}' on type '{type_name}'.")
    ref = m.group("ref") is not None
    if ref and nav.collection:
        raise _refused(REF_ONLY_ON_LOOKUPS)
    options = _options(m.group("options"), nav)
    if ref and options:
        raise _refused(f"Query options are not supported with $ref in $expand of '{name}' (syncsim).")
    return Expansion(nav, ref, _nested_query(options, nav))


def _options(text: str | None, nav: Navigation) -> dict[str, str]:
    """The nested options `$name=value;...` by name, each checked against what the property allows."""
    out: dict[str, str] = {}
    for part in split_top_level(text, ";") if text is not None else ():
        if not part:
            continue
        option, eq, value = part.partition("=")
        option = option.strip()
        if not eq:
            raise _bad(f"Syntax error in $expand of '{nav.name}' at '{part}'.")
        if option in out:
            raise _bad(f"The query option '{option}' is given more than once in $expand of '{nav.name}'.")
        out[option] = value.strip()
    for option in out:
        _check_option(option, nav, out)
    return out


def _check_option(option: str, nav: Navigation, options: dict[str, str]) -> None:
    if option == "$select":
        return
    if option in ("$top", "$orderby") and nav.collection and "$expand" not in options:
        return
    if option == "$filter" and nav.collection:
        return
    if option in ("$top", "$orderby") or (option == "$expand" and {"$top", "$orderby"} & options.keys()):
        raise _refused(ONLY_SELECT_AND_FILTER)  # also Dataverse's answer to $top/$orderby beside a nested $expand
    if option == "$filter":
        raise _refused(f"$filter in $expand of the lookup '{nav.name}' is not supported by syncsim.")
    if option == "$expand":
        raise _refused(f"Nested $expand (in $expand of '{nav.name}') is not supported by syncsim; expand "
                       f"'{nav.target.meta.set_name}' in a query of its own.")
    if option in _NOT_IN_DATAVERSE:
        raise _refused(f"The query option '{option}' is not supported in $expand.")
    raise _bad(f"The query option '{option}' is not valid in $expand of '{nav.name}'.")


def _nested_query(options: dict[str, str], nav: Navigation) -> Query:
    target = nav.target
    resolve = resolver(target, row_fields(target))
    text = options.get("$filter", "")
    predicate = compile_filter(parse_filter(text), resolve) if text.strip() else None
    order_text = options.get("$orderby", "")
    return Query(parse_select(target, options.get("$select")), text, predicate, parse_orderby(order_text, resolve),
                 order_text, parse_top(options.get("$top")), False)


# --- rendering -------------------------------------------------------------------------------------
class Expander:
    """Adds the expanded navigation properties of one request to the rows it serves (a RowExtras)."""

    def __init__(self, state: ServerState, user: User, root: str, expansions: tuple[Expansion, ...],
                 wants: Callable[[str], bool] | None) -> None:
        self.state, self.user, self.root, self.expansions = state, user, root, expansions
        self.notes: dict[str, dict[str, Annotate]] = {
            e.nav.target.meta.logical_name: annotators(state, e.nav.target, wants) if wants is not None else {}
            for e in expansions}

    def context_items(self) -> list[str]:
        """`nav(<nested select>)` per expansion (`nav,nav/$ref()` for references)."""
        out: list[str] = []
        for e in self.expansions:
            out += [e.nav.name, f"{e.nav.name}/$ref()"] if e.ref else [f"{e.nav.name}({','.join(e.query.select or ())})"]
        return out

    def add(self, row: Row, wire: dict[str, Any]) -> None:
        for e in self.expansions:
            if e.nav.collection:
                wire[e.nav.name] = [self._render(e, child) for child in self._children(e, row)]
                wire[f"{e.nav.name}@odata.nextLink"] = self._collection_link(e, row)
                continue
            key = lookup_key(e.nav.column)
            related = self._related(e, row.values.get(key))
            if e.ref:
                wire[key] = row.values.get(key)
                wire[e.nav.name] = None if related is None else {
                    "@odata.id": f"{self.root}{e.nav.target.meta.set_name}({related.id})"}
            else:
                wire[e.nav.name] = None if related is None else self._render(e, related)

    def _readable(self, table: TableStore, row: Row | None) -> bool:
        return row is not None and self.state.access.can_read(self.user, table, row)

    def _related(self, e: Expansion, row_id: Any) -> Row | None:
        """The row a lookup points at, if it exists and the user may read it."""
        related = e.nav.target.rows.get(row_id) if row_id else None
        return related if self._readable(e.nav.target, related) else None

    def _render(self, e: Expansion, row: Row) -> dict[str, Any]:
        """A related row: its etag, primary id and nested $select (a child also keeps its lookup back)."""
        wire = project(e.nav.target, row, e.query.select)
        if e.nav.collection:
            wire.setdefault(lookup_key(e.nav.column), row.values.get(lookup_key(e.nav.column)))
        annotate(wire, self.notes[e.nav.target.meta.logical_name])
        return wire

    def _children(self, e: Expansion, row: Row) -> list[Row]:
        """The readable rows of the child table that look this row up: filtered, sorted, capped."""
        target, q = e.nav.target, e.query
        rows: list[Row] = []
        for child_id in target.children.get(e.nav.column, {}).get(row.id, ()):
            child = target.rows.get(child_id)
            if child is not None and self._readable(target, child):
                rows.append(child)
        if q.predicate is not None:
            rows = list(filter(q.predicate, rows))
        if q.order:
            make, getters = key_maker(q), [field.get for field, _ in q.order]
            rows.sort(key=lambda r: make([get(r) for get in getters], r.id))
        else:
            rows.sort(key=lambda r: r.id)
        return rows[: min(MAX_RELATED, q.top if q.top is not None else MAX_RELATED)]

    def _collection_link(self, e: Expansion, row: Row) -> str:
        """A plain query on the child set that returns the same rows (syncsim has no `<set>(<id>)/<nav>`)."""
        q = e.query
        condition = f"{lookup_key(e.nav.column)} eq {row.id}"
        options = [("$select", ",".join(q.select or ())),
                   ("$filter", f"{condition} and ({q.filter_text})" if q.filter_text.strip() else condition),
                   ("$orderby", q.order_text), ("$top", "" if q.top is None else str(q.top))]
        query = "&".join(f"{name}={quote(value, safe=',()')}" for name, value in options if value)
        return f"{self.root}{e.nav.target.meta.set_name}?{query}"


def expander_for(request: web.Request, table: TableStore, prefs: dict[str, str]) -> Expander | None:
    """The request's $expand as an Expander (None without $expand); 400 for a bad one."""
    state = state_of(request)
    expansions = parse_expand(request.query.get("$expand"), state.store, table)
    if not expansions:
        return None
    return Expander(state, user_of(request), root_url(request), expansions, annotation_matcher(prefs))
