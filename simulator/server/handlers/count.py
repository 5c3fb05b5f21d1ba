"""GET <set>/$count: how many rows the user can read (optionally matching $filter) as a bare number.

Like Dataverse the number is capped at 5,000 and answered as text/plain. With `$deltatoken` it counts
the changes (upserts plus removals) since that token instead, as a delta read would list them.
"""

from __future__ import annotations

from aiohttp import web

from simulator.protocol import DeltaToken, ErrorCode, H
from simulator.protocol.errors import EXPIRED_TOKEN_MESSAGE
from simulator.protocol.odata import MAX_PAGE_SIZE
from simulator.server.errors import DataverseError
from simulator.server.expand import parse_expand
from simulator.server.handlers.changes import delta_items
from simulator.server.handlers.common import is_device, state_of, table_for, user_of
from simulator.server.handlers.writes import SET
from simulator.server.query import count_matching, parse_query
from simulator.server.store import TableStore

routes = web.RouteTableDef()


@routes.get(SET + "/$count", name="count")
async def count_rows(request: web.Request) -> web.Response:
    table = table_for(request)
    token = request.query.get("$deltatoken")
    total = _count_changes(request, table, token) if token is not None else _count_rows(request, table)
    body = str(min(total, MAX_PAGE_SIZE)).encode()
    state_of(request).counters.bytes_served += len(body)
    return web.Response(body=body, headers={"Content-Type": "text/plain", H.ODATA_VERSION: "4.0"})


def _count_rows(request: web.Request, table: TableStore) -> int:
    """Rows the user's read privilege allows that match $filter. Other options are validated, then
    ignored: OData says $top, $skip, $orderby and $expand do not affect the count ($expand is checked
    as on GET <set>, so a bad one is the same 400 there as here)."""
    state = state_of(request)
    query = parse_query(request, table)
    parse_expand(request.query.get("$expand"), state.store, table)
    return count_matching(state, table, user_of(request), query)


def _count_changes(request: web.Request, table: TableStore, raw: str) -> int:
    """Changes in the user's view since a delta token (device sessions: within the offline profile)."""
    state = state_of(request)
    try:
        token = DeltaToken.decode(raw)
    except ValueError:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $deltatoken '{raw}' is not valid.") from None
    if state.clock.now() - token.issued_at > state.settings.token_retention_days * 86400:
        raise DataverseError(ErrorCode.EXPIRED_VERSION_STAMP, EXPIRED_TOKEN_MESSAGE)
    items = delta_items(state.access, table, user_of(request), is_device(request), token.version, state.store.version)
    return len(items)
