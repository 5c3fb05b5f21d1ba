"""Change tracking: the initial tracked read (first sync) and delta reads after a $deltatoken.

Pages of up to odata.maxpagesize rows chain with @odata.nextLink; the last page carries the
@odata.deltaLink. Deltas list changed rows first, then `$deletedEntity` entries for rows deleted or
no longer in the user's view, each part in id order. Skip tokens are syncsim's own (opaque to
clients) and carry the position by row id, never an offset: `i.<start version>.<last id>` for
initial reads, `d.<from>.<to>.<u|r>.<last id>` for deltas (u: changed rows, r: removals). A
continuation is computed again from its token when its delta left the cache: a row that changed
after <to> may then move between the parts, but no other row shifts, and the next delta (from <to>)
sends every such row again, so nothing is skipped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import orjson
from aiohttp import web

from simulator.protocol import DeltaToken, ErrorCode, H
from simulator.protocol.errors import EXPIRED_TOKEN_MESSAGE
from simulator.protocol.odata import JSON_CONTENT_TYPE
from simulator.server.access import Access
from simulator.server.errors import DataverseError
from simulator.server.faults import CutShort, CuttableStream, cut_point
from simulator.server.handlers.common import (
    is_device,
    page_size,
    parse_select,
    project,
    root_url,
    state_of,
    user_of,
)
from simulator.server.middlewares import BATCH_PART
from simulator.server.state import ServerState
from simulator.server.store import Row, TableStore, User
from simulator.server.work import count_rows

DeltaItem = Row | str  # a changed row, or the id of a removed one
_NOT_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top")


def is_tracked(request: web.Request, prefs: dict[str, str]) -> bool:
    q = request.query
    return "odata.track-changes" in prefs or "$deltatoken" in q or q.get("$skiptoken", "").startswith(("i.", "d."))


async def tracked_read(request: web.Request, table: TableStore, prefs: dict[str, str]) -> web.StreamResponse:
    """Answer an initial tracked read, a delta read, or one of their continuation pages."""
    q = request.query
    for option in _NOT_WITH_TRACKING:
        if option in q:
            raise DataverseError(
                ErrorCode.TRACKING_QUERY_OPTION,
                f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.',
            )
    if not table.meta.change_tracking:
        raise DataverseError(
            ErrorCode.TRACKING_QUERY_OPTION, f"Change tracking is not enabled for {table.meta.logical_name}."
        )
    state = state_of(request)
    user = user_of(request)
    device = is_device(request)
    if device and state.access.profile(user, table.meta.logical_name) is None:
        raise DataverseError(
            ErrorCode.PRIVILEGE_DENIED,
            f"Table {table.meta.logical_name} is not in the offline profile of user class {user.user_class}.",
        )
    select = parse_select(table, q.get("$select"))
    size = page_size(request, prefs)
    skip = q.get("$skiptoken")
    if "$deltatoken" in q or (skip or "").startswith("d."):
        return _delta_page(request, state, table, user, device, select, size)
    return await _initial_page(request, state, table, user, device, select, size)


def _parse_skip(raw: str, kind: str, parts: int) -> list[str]:
    fields = raw.split(".", parts - 1)
    if len(fields) != parts or fields[0] != kind:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $skiptoken '{raw}' is not valid.")
    return fields


async def _initial_page(request: web.Request, state: ServerState, table: TableStore, user: User, device: bool,
                        select: list[str] | None, size: int) -> web.StreamResponse:
    skip = request.query.get("$skiptoken")
    if skip:
        _, version_s, last_id = _parse_skip(skip, "i", 3)
        start_version = _int(version_s, skip)
    else:
        start_version, last_id = state.store.version, ""
    ordered = state.access.sorted_visible(user, table, device, start_version)
    position = bisect_right(ordered, last_id, key=_row_id) if last_id else 0
    chunk = ordered[position : position + size]
    if position + len(chunk) >= len(ordered) or not chunk:  # the last page: its deltaLink is dated now
        link = _delta_link(request, table, select, start_version, state.clock.now())
        return await _stream_page(request, state, table, chunk, select, {"@odata.deltaLink": link})
    link = _link(request, table, select, "$skiptoken", f"i.{start_version}.{chunk[-1].id}")
    if not state.access.shared_view(user, table, device):
        return await _stream_page(request, state, table, chunk, select, {"@odata.nextLink": link})
    # a page with a nextLink is the same bytes for every user with this view: assemble it once
    key = (*state.access.view_key(user, table, device), start_version, last_id, size, tuple(select or ()), root_url(request))
    cached = state.page_cache.get(key)
    if cached is not None:
        return await _stream_cached(request, state, cached, len(chunk))
    if not state.page_cache.wants(key):
        return await _stream_page(request, state, table, chunk, select, {"@odata.nextLink": link})
    response = _page(request, state, table, chunk, [], select, {"@odata.nextLink": link})
    state.page_cache.put(key, response.body)  # type: ignore[arg-type]
    return response


def _row_id(row: Row) -> str:
    return row.id


def _delta_page(request: web.Request, state: ServerState, table: TableStore, user: User, device: bool,
                select: list[str] | None, size: int) -> web.Response:
    q = request.query
    after: tuple[str, str] | None = None  # (part, last id) served so far
    if "$deltatoken" in q:
        token = _decode_token(q["$deltatoken"])
        _check_retention(state, token)
        from_v, to_v = token.version, state.store.version
    else:
        raw = q["$skiptoken"]
        _, a, b, part, last = _parse_skip(raw, "d", 5)
        if part not in ("u", "r"):
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $skiptoken '{raw}' is not valid.")
        from_v, to_v, after = _int(a, raw), _int(b, raw), (part, last)
        state.counters.delta_continuations += 1
    key = (user.index, table.meta.logical_name, device, from_v, to_v)
    items = state.delta_cache.get(key)
    if items is None:
        items = state.delta_cache.put(key, delta_items(state.access, table, user, device, from_v, to_v))
    start = _position(items, after)
    window = items[start : start + size]
    links: dict[str, str] = {}
    if start + size < len(items):
        last_item = window[-1]
        mark = f"u.{last_item.id}" if isinstance(last_item, Row) else f"r.{last_item}"
        links["@odata.nextLink"] = _link(request, table, select, "$skiptoken", f"d.{from_v}.{to_v}.{mark}")
    else:
        links["@odata.deltaLink"] = _delta_link(request, table, select, to_v, state.clock.now())
    rows = [i for i in window if isinstance(i, Row)]
    gone = [i for i in window if isinstance(i, str)]
    return _page(request, state, table, rows, gone, select, links, delta=True)


def _position(items: list[DeltaItem], after: tuple[str, str] | None) -> int:
    """Index of the first item after (part, last id) in a delta list (changed rows, then removals)."""
    if after is None:
        return 0
    part, last = after
    upserts = bisect_right(items, False, key=lambda i: isinstance(i, str))  # changed rows come first
    if part == "u":
        return bisect_right(items, last, hi=upserts, key=_item_id)
    return bisect_right(items, last, lo=upserts, key=_item_id)


def _item_id(item: DeltaItem) -> str:
    return item.id if isinstance(item, Row) else item


def delta_items(access: Access, table: TableStore, user: User, device: bool, from_v: int, to_v: int) -> list[DeltaItem]:
    """Changed rows in the user's view, then ids of rows that left it, for versions (from_v, to_v].

    Each part is in id order, so a continuation can find its place by id. A user who may read only
    its own rows, now and at `from_v`, is looked up in its own owner's log only."""
    name = table.meta.logical_name
    own_only = user.privilege(name).read == "user" and all(v <= from_v for v, _ in user.privilege_log.get(name, ()))
    changed = table.changes_since(from_v, to_v, user.index if own_only else None)
    forced: set[str] = set()  # rows whose visibility a privilege change may have flipped
    log = user.view_log.get(table.meta.logical_name, [])  # appended in version order
    for _, row_id in log[bisect_right(log, from_v, key=_version_of) : bisect_right(log, to_v, key=_version_of)]:
        forced.add(row_id)
        changed.setdefault(row_id, table.rows.get(row_id))
    pt = access.profile(user, table.meta.logical_name) if device else None
    lenient = pt is not None and pt.filter == "related"
    parents: dict[str, set[str]] = {}
    upserts: list[DeltaItem] = []
    removed: list[DeltaItem] = []
    for row_id, prev in changed.items():
        row = table.rows.get(row_id)
        if row is not None and access.row_visible(user, table, row, device, parents):
            upserts.append(row)
        elif row_id in forced or (
            prev is not None and (lenient or access.row_visible(user, table, prev, device, parents, from_v))
        ) or (prev is None and _created_here(access, table, user, device, row_id, row, parents)):
            removed.append(row_id)
    upserts.sort(key=_item_id)
    removed.sort(key=_item_id)
    return upserts + removed


def _created_here(access: Access, table: TableStore, user: User, device: bool, row_id: str, row: Row | None,
                  parents: dict[str, set[str]]) -> bool:
    """A row created since the token and now out of the view: could the device hold it? Only if it
    wrote the row itself (a delta shows rows as at its end), so: deleted since, when the version
    deleted was in its view; still there, when the user created it (rows are owned by their
    creator), e.g. a note on a work order the same upload then deleted."""
    if row is not None:
        return row.owner == user.index
    gone = table.deleted.get(row_id)
    return gone is not None and access.row_visible(user, table, gone, device, parents)


def _version_of(entry: tuple[int, str]) -> int:
    return entry[0]


def _decode_token(raw: str) -> DeltaToken:
    try:
        return DeltaToken.decode(raw)
    except ValueError:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $deltatoken '{raw}' is not valid.") from None


def _check_retention(state: ServerState, token: DeltaToken) -> None:
    retention_s = state.settings.token_retention_days * 86400
    if state.clock.now() - token.issued_at > retention_s:
        raise DataverseError(ErrorCode.EXPIRED_VERSION_STAMP, EXPIRED_TOKEN_MESSAGE)


def _int(text: str, raw: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $skiptoken '{raw}' is not valid.") from None


def _link(request: web.Request, table: TableStore, select: list[str] | None, name: str, value: str) -> str:
    params = [f"$select={','.join(select)}"] if select else []
    params.append(f"{name}={quote(value, safe='')}")
    return f"{root_url(request)}{table.meta.set_name}?{'&'.join(params)}"


def _delta_link(request: web.Request, table: TableStore, select: list[str] | None, version: int, now: float) -> str:
    return _link(request, table, select, "$deltatoken", DeltaToken(version, now).encode())


def _page(request: web.Request, state: ServerState, table: TableStore, rows: list[Row], gone: list[str],
          select: list[str] | None, links: dict[str, str], delta: bool = False) -> web.Response:
    root = root_url(request)
    cols = f"({','.join(select)})" if select else ""
    context = f"{root}$metadata#{table.meta.set_name}{cols}" + ("/$delta" if delta else "")
    if select is None:
        parts = [row._enc or row.encoded(table) for row in rows]  # cached bytes, encoded on first use
    else:
        parts = [orjson.dumps(project(table, row, select)) for row in rows]
    deleted_ctx = f"{root}$metadata#{table.meta.set_name}/$deletedEntity"
    parts.extend(orjson.dumps({"@odata.context": deleted_ctx, "id": i, "reason": "deleted"}) for i in gone)
    head = orjson.dumps({"@odata.context": context})[:-1] + b',"value":['
    tail = b"]" + (b"," + orjson.dumps(links)[1:] if links else b"}")
    if parts:  # the page is copied once: head and tail ride on the first and last rows
        parts[0] = head + parts[0]
        parts[-1] = parts[-1] + tail
        body = b",".join(parts)
    else:
        body = head + tail
    return _respond(state, body, len(rows))


STREAM_BYTES = 32 * 1024
"""A streamed page is written in pieces of about this size, each once the client has taken the last
(aiohttp drains past 64 KiB): a slow client costs the server a few tens of KiB, not a copy of its
page. With 20,000 devices mid-download on phone networks, page-sized copies are tens of GB."""


async def _stream_page(request: web.Request, state: ServerState, table: TableStore, rows: list[Row],
                       select: list[str] | None, links: dict[str, str]) -> web.StreamResponse:
    """A page written in pieces with a known Content-Length: no page-sized copy is made (the rows'
    encodings are cached on the rows)."""
    if select is not None or request.get(BATCH_PART):
        return _page(request, state, table, rows, [], select, links)
    root = root_url(request)
    head = orjson.dumps({"@odata.context": f"{root}$metadata#{table.meta.set_name}"})[:-1] + b',"value":['
    tail = b"]," + orjson.dumps(links)[1:]
    parts = [row._enc or row.encoded(table) for row in rows]
    length = len(head) + sum(map(len, parts)) + max(0, len(parts) - 1) + len(tail)
    if length <= STREAM_BYTES:
        return _page(request, state, table, rows, [], select, links)

    def pieces() -> Iterator[bytes]:
        group: list[bytes] = [head]
        size = len(head)
        for i, part in enumerate(parts):
            group.append(part if i == 0 else b"," + part)
            size += len(group[-1])
            if size >= STREAM_BYTES:
                yield b"".join(group)
                group, size = [], 0
        group.append(tail)
        yield b"".join(group)

    response, whole = await _stream(request, state, pieces(), length, len(rows))
    if whole:
        state.counters.rows_served += len(rows)
    return response


async def _stream_cached(request: web.Request, state: ServerState, body: bytes, rows: int) -> web.StreamResponse:
    """A cached page (shared bytes), written in pieces: no per-client copy of it."""
    if len(body) <= STREAM_BYTES or request.get(BATCH_PART):
        return _respond(state, body, rows)
    view = memoryview(body)
    pieces = (view[i : i + STREAM_BYTES] for i in range(0, len(body), STREAM_BYTES))
    response, whole = await _stream(request, state, pieces, len(body), rows)
    if whole:
        state.counters.rows_served += rows
    return response


async def _stream(request: web.Request, state: ServerState, pieces: Iterable[bytes | memoryview],
                  length: int, rows: int) -> tuple[web.StreamResponse, bool]:
    """Write a 200 answer of `length` bytes and `rows` rows piece by piece, each after the client took
    the last; an injected cut (faults) stops it half-way. Returns the answer and whether it was sent
    whole (only then are its rows counted as served; the server model counts them as read at once)."""
    count_rows(rows)
    response = web.StreamResponse(headers={H.ODATA_VERSION: "4.0", "Content-Type": JSON_CONTENT_TYPE,
                                           H.PREFERENCE_APPLIED: "odata.track-changes"})
    response.content_length = length
    out = CuttableStream(request, response, cut_point(state, length) if state.faults_on else None)
    try:
        await response.prepare(request)
        for piece in pieces:
            await out.write(piece)
        await response.write_eof()
    except CutShort:
        return response, False
    except ConnectionError:  # the client went away (airplane mode, a cut): nothing more to send
        return response, False
    state.counters.bytes_served += length
    return response, True


def _respond(state: ServerState, body: bytes, rows: int) -> web.Response:
    state.counters.served(rows, len(body))
    headers = {H.ODATA_VERSION: "4.0", "Content-Type": JSON_CONTENT_TYPE,
               H.PREFERENCE_APPLIED: "odata.track-changes"}
    return web.Response(body=body, headers=headers)
