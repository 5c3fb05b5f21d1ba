"""Single-row writes: POST <set>, PATCH <set>(<id>), DELETE <set>(<id>)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from simulator.protocol import ErrorCode, H, format_etag
from simulator.protocol.ids import new_guid
from simulator.protocol.odata import entity_url
from simulator.server.errors import DataverseError
from simulator.server.handlers.common import (
    base_url,
    origin_of,
    prefer,
    project,
    row_key,
    row_target,
    state_of,
    table_for,
    user_of,
)
from simulator.server.middlewares import json_response
from simulator.server.mutations import Writer, WriteResult
from simulator.server.store import TableStore
from simulator.server.values import guid

routes = web.RouteTableDef()
SET = "/api/data/v9.2/{set:[A-Za-z_][A-Za-z0-9_]*}"
ROW = SET + "({key:[^()/]+})"
KEY_SAFE = "'=,-._~!$&*+;:@"  # an alternate key in a URL header: quotes, commas and the like stay, the rest is %-encoded


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: 415 for another content type, 413 over the size limit, 400 if malformed."""
    ctype = request.headers.get("Content-Type", "application/json")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":  # parameters (charset, type=entry) allowed
        raise DataverseError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"Content-Type {ctype!r} is not supported; use application/json.")
    limit = int(state_of(request).settings.max_body_mb * 1024 * 1024)
    if request.content_length is not None and request.content_length > limit:
        raise DataverseError(ErrorCode.PAYLOAD_TOO_LARGE, f"The request body exceeds {limit} bytes.")
    body = await request.read()
    if len(body) > limit:
        raise DataverseError(ErrorCode.PAYLOAD_TOO_LARGE, f"The request body exceeds {limit} bytes.")
    try:
        return orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The request body is not valid JSON: {exc}.") from None


def write_response(request: web.Request, table: TableStore, result: WriteResult, create_status: int = 201,
                   entity_key: str | None = None) -> web.Response:
    """204 with OData-EntityId (naming `entity_key`, an alternate key, when given), or the row under
    Prefer: return=representation."""
    url = entity_url(base_url(request), table.meta.set_name,
                     quote(entity_key, safe=KEY_SAFE) if entity_key is not None else result.row_id)
    if "return" in prefer(request) and prefer(request)["return"] == "representation" and result.row is not None:
        body = project(table, result.row, None)
        body["@odata.context"] = f"{base_url(request)}/api/data/v9.2/$metadata#{table.meta.set_name}/$entity"
        status = create_status if result.created else 200
        return json_response(body, status, {H.PREFERENCE_APPLIED: "return=representation", H.ETAG: format_etag(result.row.version)})
    headers = {H.ODATA_VERSION: "4.0"}
    if result.row is not None:
        headers[H.ODATA_ENTITY_ID] = url
    if result.created:
        headers["Location"] = url
    if result.row is not None:
        headers[H.ETAG] = format_etag(result.row.version)
    if result.conflict:
        headers[H.CONFLICT] = "true"
    return web.Response(status=204, headers=headers)


async def create_with(request: web.Request, writer: Writer) -> web.Response:
    """POST <set> with a given Writer (a changeset shares one)."""
    table = table_for(request)
    payload = await read_json(request)
    result = writer.at(origin_of(request)).create(table, payload, request.headers.get(H.IF_NONE_MATCH))
    return write_response(request, table, result)


async def update_with(request: web.Request, writer: Writer) -> web.Response:
    """PATCH by GUID, or by alternate key: the row with those key values, or (an upsert without
    If-Match) a new row that gets them; the answer's OData-EntityId then names the key, as Dataverse's."""
    table = table_for(request)
    key, key_values = row_target(request)
    payload = await read_json(request)
    if_match = request.headers.get(H.IF_MATCH)
    if key is None:  # an alternate key no row has
        if if_match is not None:
            raise DataverseError(ErrorCode.NOT_FOUND, f"A record with the specified key values does not exist in "
                                 f"{table.meta.logical_name} entity")
        key = _new_row_id(request, table, payload)
        payload = {**payload, **key_values} if isinstance(payload, dict) else payload
    result = writer.at(origin_of(request)).update(table, key, payload, if_match, request.headers.get(H.IF_NONE_MATCH))
    return write_response(request, table, result, entity_key=request.match_info["key"] if key_values else None)


def _new_row_id(request: web.Request, table: TableStore, payload: Any) -> str:
    """The id of the row an upsert by alternate key creates: the body's primary id (as on POST; 412
    DuplicateRecord when a row has it already, since that row does not have the URL's key), or a new one."""
    given = payload.get(table.meta.id_column) if isinstance(payload, dict) else None
    if given is None:
        return new_guid(state_of(request).rng)
    row_id = guid(given, table.meta.id_column)
    if row_id in table.rows:
        raise DataverseError(ErrorCode.DUPLICATE_RECORD, f"A record with id {row_id} already exists.")
    return row_id


async def delete_with(request: web.Request, writer: Writer) -> web.Response:
    table = table_for(request)
    result = writer.at(origin_of(request)).delete(table, row_key(request), request.headers.get(H.IF_MATCH))
    return write_response(request, table, result)


def _writer(request: web.Request) -> Writer:
    return Writer(state_of(request), user_of(request))


@routes.post(SET, name="create")
async def create(request: web.Request) -> web.Response:
    return await create_with(request, _writer(request))


@routes.patch(ROW, name="update")
async def update(request: web.Request) -> web.Response:
    return await update_with(request, _writer(request))


@routes.delete(ROW, name="delete")
async def delete(request: web.Request) -> web.Response:
    return await delete_with(request, _writer(request))
