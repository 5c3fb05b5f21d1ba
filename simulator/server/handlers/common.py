"""Small helpers the handlers share: table and key lookup, base URL, $select, Prefer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.protocol import ErrorCode, H, parse_prefer
from simulator.protocol.odata import API_ROOT, GUID_RE, MAX_PAGE_SIZE
from simulator.server.errors import DataverseError
from simulator.server.middlewares import USER
from simulator.server.state import STATE, ServerState
from simulator.server.store import Row, TableStore, User, key_index
from simulator.server.write_log import Origin

GUID = GUID_RE


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE]


def user_of(request: web.Request) -> User:
    return request[USER]


def table_for(request: web.Request, entity_set: str | None = None) -> TableStore:
    """The table behind the {set} path segment; 404 for an unknown set."""
    name = entity_set if entity_set is not None else request.match_info["set"]
    table = state_of(request).store.by_set.get(name)
    if table is None:
        raise DataverseError(ErrorCode.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{name}'.")
    return table


def row_key(request: web.Request) -> str:
    """The row named by <set>(<key>): a GUID (lowercased), or an alternate key's values resolved to
    the row's id (404 when no row has them); 400 for anything else."""
    row_id, values = row_target(request)
    if row_id is None:
        table = table_for(request)
        raise DataverseError(ErrorCode.NOT_FOUND, f"A record with the specified key values does not exist in "
                             f"{table.meta.logical_name} entity")
    return row_id


def row_target(request: web.Request) -> tuple[str | None, dict[str, Any]]:
    """(row id, {}) for a GUID key; for an alternate key (`accountnumber='A-1'`, composite
    `a='x',b=2`), (the id of the row with those values or None, {column: value}): an upsert by key
    creates the row with them."""
    return resolve_key(table_for(request), request.match_info["key"])


def resolve_key(table: TableStore, raw: str) -> tuple[str | None, dict[str, Any]]:
    """A key segment's row: (guid, {}), or for an alternate key (row id or None, {column: value})."""
    raw = raw.strip()
    key = raw.strip("{}")
    if GUID.match(key):
        return key.lower(), {}
    pairs = _key_pairs(raw)
    names = {n.lower() for n in pairs}
    match = next((name for name, cols in table.keys.items() if set(cols) == names), None)
    if match is None:
        known = "; ".join(f"{n} ({', '.join(c)})" for n, c in table.keys.items()) or "none"
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}' is neither a GUID nor an alternate key of "
                             f"{table.meta.logical_name} (its alternate keys: {known}).")
    values = {n.lower(): _key_value(table, n.lower(), v, raw) for n, v in pairs.items()}
    found = table.by_key[match].get(key_index(tuple(values[c] for c in table.keys[match])))
    return found, values


def _key_pairs(raw: str) -> dict[str, str | int | float]:
    """`a='x''y',b=2` as {"a": "x'y", "b": 2}: quoted strings (a quote doubled inside) and bare numbers."""
    out: dict[str, str | int | float] = {}
    i, n = 0, len(raw)
    while i < n:
        eq = raw.find("=", i)
        name = raw[i:eq].strip() if eq >= 0 else ""
        if not name or not name.replace("_", "").isalnum():
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}' is not valid: expected name=value pairs.")
        i = eq + 1
        if raw[i:i + 1] == "'":
            text, i = [], i + 1
            while True:
                end = raw.find("'", i)
                if end < 0:
                    raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}' has an unterminated string.")
                text.append(raw[i:end])
                if raw[end + 1:end + 2] == "'":  # '' is one quote
                    text.append("'")
                    i = end + 2
                    continue
                i = end + 1
                break
            value: str | int | float = "".join(text)
        else:
            end = raw.find(",", i)
            end = n if end < 0 else end
            literal = raw[i:end].strip()
            try:
                value = int(literal) if literal.lstrip("-").isdigit() else float(literal)
            except ValueError:
                raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}' has a value that is neither a "
                                     f"quoted string nor a number: {literal!r}.") from None
            i = end
        if name in out:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}' names {name} twice.")
        out[name] = value
        if i < n:
            if raw[i] != "," or i == n - 1:  # a comma needs a pair after it
                raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}' is not valid after {name}.")
            i += 1
    return out


def _key_value(table: TableStore, column: str, value: str | int | float, raw: str) -> Any:
    """A key value of the column's type (text quoted, numbers bare), as rows hold it."""
    col = table.meta.column(column)
    kind = col.type if col is not None else "text"
    if kind in ("text", "datetime"):
        if not isinstance(value, str):
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}': {column} is text; quote its value.")
        return value
    if isinstance(value, str):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}': {column} is a number; do not quote it.")
    if kind in ("integer", "choice"):
        if isinstance(value, float) and not value.is_integer():
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The key '{raw}': {column} is a whole number.")
        return int(value)
    return float(value)


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def root_url(request: web.Request) -> str:
    """<scheme>://<host>/api/data/v9.2/"""
    return f"{base_url(request)}{API_ROOT}/"


def prefer(request: web.Request) -> dict[str, str]:
    return parse_prefer(request.headers.getall("Prefer", []))


def page_size(request: web.Request, prefs: dict[str, str]) -> int:
    """odata.maxpagesize, defaulting to and capped at the server maximum (5,000)."""
    limit = min(MAX_PAGE_SIZE, state_of(request).settings.max_page_size)
    raw = prefs.get("odata.maxpagesize")
    if raw is None or raw == "":
        return limit
    try:
        size = int(raw)
    except ValueError:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"odata.maxpagesize must be an integer, got {raw!r}.") from None
    if size <= 0:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"odata.maxpagesize must be positive, got {size}.")
    return min(size, limit)


def parse_select(table: TableStore, raw: str | None) -> list[str] | None:
    """$select column names (validated against the table's columns); None for all columns."""
    if not raw:
        return None
    names = [c.strip() for c in raw.split(",") if c.strip()]
    known = known_columns(table)
    for name in names:
        if name not in known:
            raise DataverseError(
                ErrorCode.BAD_PAYLOAD,
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table.meta.logical_name}'.",
            )
    return names


def known_columns(table: TableStore) -> set[str]:
    """Every readable column name: declared, lookups (both names), system and file companions."""
    meta = table.meta
    out = {meta.id_column, meta.primary_name, "createdon", "modifiedon", "versionnumber",
           "_ownerid_value", "ownerid", "description"}
    for c in meta.columns:
        out.add(c.name)
        if c.type == "lookup":
            out.add(f"_{c.name}_value")
        if c.type == "file":
            out.update({f"{c.name}_name", f"{c.name}_size"})
    return out


def project(table: TableStore, row: Row, select: list[str] | None) -> dict[str, Any]:
    """A row's wire dict, limited to $select (the etag and primary id always stay)."""
    full = table.render(row)
    if select is None:
        return full
    out = {"@odata.etag": full["@odata.etag"], table.meta.id_column: row.id}
    for name in select:
        if name in full:
            out[name] = full[name]
        elif f"_{name}_value" in full:
            out[f"_{name}_value"] = full[f"_{name}_value"]
        else:
            out[name] = None
    return out


def is_device(request: web.Request) -> bool:
    """A device session (x-syncsim-device-id): offline-profile filters apply to its tracked reads."""
    return H.DEVICE_ID in request.headers


def origin_of(request: web.Request) -> Origin:
    """Which device and op a write comes from (x-syncsim-device-id, x-syncsim-op-id), for the write log."""
    raw = request.headers.get(H.BASE_VERSION)
    base = None
    if raw is not None:
        text = raw.strip()
        if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The {H.BASE_VERSION} value {raw!r} is not a row version.")
        base = int(text)
    return Origin(text_header(request, H.DEVICE_ID), text_header(request, H.OP_ID), base)


def text_header(request: web.Request, name: str) -> str | None:
    """A header's value, refused with 400 when it is not UTF-8 text (it would be stored and served)."""
    value = request.headers.get(name)
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The {name} header is not UTF-8 text.") from None
    return value
