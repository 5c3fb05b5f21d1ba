"""Plain (not change-tracked) collection queries: $select, $filter, $orderby, $top, $count, paging.

Minimal version: $select, $top and paging by primary id. The $filter grammar comes in odata_filter.py.
"""

from __future__ import annotations

from bisect import bisect_right
from urllib.parse import quote

import orjson
from aiohttp import web

from simulator.protocol import H
from simulator.protocol.odata import JSON_CONTENT_TYPE
from simulator.server.handlers.common import page_size, parse_select, project, root_url, state_of, user_of
from simulator.server.store import TableStore


async def run_query(request: web.Request, table: TableStore, prefs: dict[str, str]) -> web.Response:
    state = state_of(request)
    user = user_of(request)
    select = parse_select(table, request.query.get("$select"))
    size = page_size(request, prefs)
    ids = state.access.sorted_visible(user, table, False, state.store.version)
    last = request.query.get("$skiptoken", "")
    start = bisect_right(ids, last) if last else 0
    rows = [table.rows[i] for i in ids[start : start + size]]
    body: dict[str, object] = {"@odata.context": f"{root_url(request)}$metadata#{table.meta.set_name}",
                               "value": [project(table, r, select) for r in rows]}
    if start + size < len(ids) and rows:
        body["@odata.nextLink"] = f"{root_url(request)}{table.meta.set_name}?$skiptoken={quote(rows[-1].id)}"
    state.counters.rows_served += len(rows)
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": JSON_CONTENT_TYPE, H.ODATA_VERSION: "4.0"})
