"""Reads: GET <set> (queries and change-tracked reads) and GET <set>(<id>), both with $expand."""

from __future__ import annotations

from aiohttp import web

from simulator.protocol import H, format_etag, parse_etag
from simulator.server.errors import not_found
from simulator.server.expand import expander_for
from simulator.server.handlers import changes
from simulator.server.handlers.common import (
    parse_select,
    prefer,
    project,
    root_url,
    row_key,
    state_of,
    table_for,
    user_of,
)
from simulator.server.handlers.writes import ROW, SET
from simulator.server.middlewares import json_response
from simulator.server.query import context_columns, run_query

routes = web.RouteTableDef()


@routes.get(SET, name="list")
async def list_rows(request: web.Request) -> web.StreamResponse:
    table = table_for(request)
    prefs = prefer(request)
    if changes.is_tracked(request, prefs):  # refuses $expand (and $filter, $orderby, $top) itself
        return await changes.tracked_read(request, table, prefs)
    return await run_query(request, table, prefs, expander_for(request, table, prefs))


@routes.get(ROW, name="retrieve")
async def retrieve(request: web.Request) -> web.Response:
    table = table_for(request)
    key = row_key(request)
    state = state_of(request)
    row = table.rows.get(key)
    if row is None or not state.access.can_read(user_of(request), table, row):
        raise not_found(table.meta.logical_name, key)
    prefs = prefer(request)
    expander = expander_for(request, table, prefs)
    select = parse_select(table, request.query.get("$select"))
    etag = format_etag(row.version)
    inm = request.headers.get(H.IF_NONE_MATCH)
    # as Dataverse, never 304 under $expand (the related rows may have changed)
    if (inm is not None and parse_etag(inm) == row.version and expander is None
            and "odata.include-annotations" not in prefs):
        return web.Response(status=304, headers={H.ODATA_VERSION: "4.0", H.ETAG: etag})
    body = {"@odata.context": f"{root_url(request)}$metadata#{table.meta.set_name}"
            f"{context_columns(select, expander)}/$entity"}
    body.update(project(table, row, select))
    if expander is not None:
        expander.add(row, body)
    state.counters.served(1)
    return json_response(body, headers={H.ETAG: etag})
