"""File columns: download (with Range), single and chunked upload, delete.

Routes (../shared/DATAVERSE_WEBAPI.md section 8):
- `GET <set>(<id>)/<col>/$value`: streams the file in chunks of at most 256 KiB, straight from
  `seed.file_bytes`, so a generated 100 MB file is never held in memory. `Range: bytes=s-e` answers
  206 with `Content-Range` and `x-ms-chunk-size`.
- `PATCH <set>(<id>)/<col>`: one request with the raw bytes and `x-ms-file-name` (204); or, with
  `x-ms-transfer-mode: chunked`, opens a session (200 + absolute `Location: ...?sessiontoken=`) whose
  chunks (`Content-Range: bytes s-e/total`) answer 206 until the file is complete, then 204.
- `DELETE <set>(<id>)/<col>`: removes the file (204); on a non-file column it clears the value.

Every upload or delete writes a new row version through the store, so change tracking reports it.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field

from aiohttp import web

from simulator.protocol import ErrorCode, H, format_etag
from simulator.protocol.ids import new_guid
from simulator.protocol.odata import FILE_CHUNK_BYTES
from simulator.server.errors import DataverseError, not_found
from simulator.server.faults import CutShort, CuttableStream, cut_point
from simulator.server.handlers.common import (
    base_url,
    origin_of,
    row_key,
    state_of,
    table_for,
    text_header,
    user_of,
)
from simulator.server.handlers.writes import ROW
from simulator.server.mutations import Writer, WriteResult
from simulator.server.seed import file_bytes
from simulator.server.state import ServerState
from simulator.server.store import FileInfo, Row, TableStore, User

routes = web.RouteTableDef()
COLUMN = ROW + "/{column:[A-Za-z_][A-Za-z0-9_]*}"
STREAM_CHUNK = 256 * 1024  # bytes per write while streaming a download
MAX_FILE_BYTES = 128 * 1024 * 1024  # larger uploads get FILE_TOO_LARGE (files are kept in memory)
SESSION_TTL_S = 3600.0  # scenario seconds an unfinished chunked upload stays open
MAX_SESSIONS = 1000  # open chunked uploads per server; the oldest is dropped beyond this
TRANSFER_MODE = "x-ms-transfer-mode"
EXPOSED = ", ".join([H.FILE_SIZE, H.FILE_NAME, "mimetype", H.CHUNK_SIZE, "Content-Range", "Location", "Accept-Ranges"])
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)\s*-\s*(\d+)\s*/\s*(\d+)\s*$", re.IGNORECASE)


@dataclass
class _Upload:
    """An open chunked upload: where it goes, who opened it, and the byte ranges received so far."""

    table: str
    row_id: str
    column: str
    user: int
    name: str
    opened_at: float
    total: int | None = None
    data: bytearray = field(default_factory=bytearray)
    ranges: list[tuple[int, int]] = field(default_factory=list)  # merged, half-open [s, e)

    def add(self, start: int, chunk: bytes) -> None:
        """Copy a chunk into place and merge its range with those received before."""
        self.data[start : start + len(chunk)] = chunk
        merged: list[tuple[int, int]] = []
        for s, e in sorted([*self.ranges, (start, start + len(chunk))]):
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.ranges = merged

    @property
    def complete(self) -> bool:
        return self.total is not None and self.ranges == [(0, self.total)]


def _sessions(state: ServerState) -> dict[str, _Upload]:
    """This server's open chunked uploads, with expired ones dropped."""
    sessions: dict[str, _Upload] = state.upload_sessions
    cutoff = state.clock.now() - SESSION_TTL_S
    for token in [t for t, s in sessions.items() if s.opened_at < cutoff]:
        del sessions[token]
    return sessions


# --- shared checks -------------------------------------------------------------------------------
def _file_column(table: TableStore, column: str) -> bool:
    """True for a file column, False for another known column; 400 for an unknown name."""
    if column in table.file_columns:
        return True
    meta = table.meta
    if meta.column(column) is None and column not in (meta.primary_name, meta.id_column, "description"):
        raise DataverseError(
            ErrorCode.BAD_PAYLOAD,
            f"Could not find a property named '{column}' on type 'Microsoft.Dynamics.CRM.{meta.logical_name}'.",
        )
    return False


def _require_file_column(table: TableStore, column: str) -> None:
    if not _file_column(table, column):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"'{column}' is not a file column of {table.meta.logical_name}.")


def _readable_row(state: ServerState, user: User, table: TableStore, row_id: str) -> Row:
    row = table.rows.get(row_id)
    if row is None or not state.access.can_read(user, table, row):
        raise not_found(table.meta.logical_name, row_id)
    return row


def _new_file(state: ServerState, name: str, data: bytes | bytearray, mimetype: str | None) -> FileInfo:
    file_id = new_guid(state.rng)
    kind = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileInfo(file_id=file_id, size=len(data), name=name, data=bytes(data), mimetype=kind)


def _too_large(size: int | None) -> DataverseError:
    what = f"{size} bytes" if size is not None else "over the limit"
    return DataverseError(ErrorCode.FILE_TOO_LARGE,
                          f"Attachment file size is too big: {what} (the limit is {MAX_FILE_BYTES} bytes).")


async def _body(request: web.Request) -> bytes:
    """The raw request body, refused with FILE_TOO_LARGE past MAX_FILE_BYTES."""
    if request.content_length is not None and request.content_length > MAX_FILE_BYTES:
        raise _too_large(request.content_length)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # the app's client_max_size (server.max_body_mb) was hit
        raise _too_large(None) from None
    if len(body) > MAX_FILE_BYTES:
        raise _too_large(len(body))
    return body


def _content_mimetype(request: web.Request) -> str | None:
    """The upload's own media type, or None when it is a generic one (then the name decides)."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return None if ctype in ("", "application/octet-stream", "application/json") else ctype


# --- download ------------------------------------------------------------------------------------
def _parse_range(header: str, size: int) -> tuple[int, int]:
    """`bytes=s-e`, `bytes=s-` or `bytes=-n` as an inclusive (start, end); 416 past the end."""
    m = _RANGE.match(header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The Range header {header!r} is not 'bytes=<start>-<end>'.")
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise _unsatisfiable(header, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> DataverseError:
    return DataverseError(ErrorCode.RANGE_NOT_SATISFIABLE,
                          f"The range {header!r} is outside the file of {size} bytes.",
                          {"Content-Range": f"bytes */{size}", H.FILE_SIZE: str(size)})


@routes.get(COLUMN + "/$value", name="file_download")
async def download(request: web.Request) -> web.StreamResponse:
    """Stream a file column's bytes, whole (200) or one range (206)."""
    state = state_of(request)
    table = table_for(request)
    key = row_key(request)
    column = request.match_info["column"]
    _require_file_column(table, column)
    row = _readable_row(state, user_of(request), table, key)
    info = row.files.get(column) if row.files else None
    if info is None:
        raise DataverseError(ErrorCode.NOT_FOUND,
                             f"No file attachment found for attribute '{column}' on {table.meta.logical_name} "
                             f"With Id = {key}.")
    headers = {H.ODATA_VERSION: "4.0", "Content-Type": "application/octet-stream", H.FILE_SIZE: str(info.size),
               H.FILE_NAME: info.name, "mimetype": info.mimetype, "Accept-Ranges": "bytes",
               H.CHUNK_SIZE: str(FILE_CHUNK_BYTES), "Access-Control-Expose-Headers": EXPOSED}
    status, start, end = 200, 0, info.size - 1
    raw_range = request.headers.get("Range")
    if raw_range is not None:
        start, end = _parse_range(raw_range, info.size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start + 1
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    pos = start
    out = CuttableStream(request, response, cut_point(state, end - start + 1) if state.faults_on else None)
    try:
        while pos <= end:
            chunk = file_bytes(info, pos, min(pos + STREAM_CHUNK, end + 1))
            if not chunk:
                break
            await out.write(chunk)
            state.counters.file_bytes_served += len(chunk)
            pos += len(chunk)
        await response.write_eof()
    except (ConnectionResetError, CutShort):
        pass  # the client went away mid-download (or a fault cut it); it resumes with a Range request
    return response


# --- upload --------------------------------------------------------------------------------------
@routes.patch(COLUMN, name="file_upload")
async def upload(request: web.Request) -> web.Response:
    """A whole file, the start of a chunked upload, or one chunk of it (?sessiontoken=)."""
    state = state_of(request)
    table = table_for(request)
    key = row_key(request)
    column = request.match_info["column"]
    if not _file_column(table, column):
        raise DataverseError(ErrorCode.BAD_PAYLOAD,
                             f"'{column}' is not a file column; write it with PATCH {table.meta.set_name}(<id>).")
    user = user_of(request)
    token = request.query.get("sessiontoken")
    if token is not None:
        return await _chunk(request, state, user, table, key, column, token)
    if request.headers.get(TRANSFER_MODE, "").lower() == "chunked":
        return await _open_session(request, state, user, table, key, column)
    # If-None-Match (the SDK sends "null") is accepted and ignored, as Dataverse does.
    writer = Writer(state, user, origin_of(request))
    writer.writable(table, key)
    name = text_header(request, H.FILE_NAME) or request.query.get(H.FILE_NAME)
    if not name:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "The x-ms-file-name header is required to upload a file.")
    body = await _body(request)
    info = _new_file(state, name, body, _content_mimetype(request))
    return _written(writer.set_file(table, key, column, info, request.headers.get(H.IF_MATCH)))


def _written(result: WriteResult) -> web.Response:
    assert result.row is not None
    headers = {H.ODATA_VERSION: "4.0", H.ETAG: format_etag(result.row.version)}
    if result.conflict:
        headers[H.CONFLICT] = "true"
    return web.Response(status=204, headers=headers)


async def _open_session(request: web.Request, state: ServerState, user: User, table: TableStore,
                        key: str, column: str) -> web.Response:
    Writer(state, user, origin_of(request)).writable(table, key, request.headers.get(H.IF_MATCH))
    name = request.query.get(H.FILE_NAME) or text_header(request, H.FILE_NAME)
    if not name:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "Chunked upload needs ?x-ms-file-name=<name>.")
    await request.read()  # an empty body, by protocol
    sessions = _sessions(state)
    while len(sessions) >= MAX_SESSIONS:
        del sessions[next(iter(sessions))]
    token = state.new_token(18)
    sessions[token] = _Upload(table.meta.logical_name, key, column, user.index, name, state.clock.now())
    location = f"{base_url(request)}{request.path}?sessiontoken={token}"
    return web.Response(status=200, headers={H.ODATA_VERSION: "4.0", "Location": location,
                                             H.CHUNK_SIZE: str(FILE_CHUNK_BYTES), "Accept-Ranges": "bytes",
                                             "Access-Control-Expose-Headers": EXPOSED})


async def _chunk(request: web.Request, state: ServerState, user: User, table: TableStore,
                 key: str, column: str, token: str) -> web.Response:
    sessions = _sessions(state)
    session = sessions.get(token)
    if session is None or (session.table, session.row_id, session.column, session.user) != (
            table.meta.logical_name, key, column, user.index):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "The upload session token is unknown or has expired.")
    m = _CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
    if not m:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "Each chunk needs 'Content-Range: bytes <start>-<end>/<total>'.")
    start, end, total = (int(g) for g in m.groups())
    if total > MAX_FILE_BYTES:
        del sessions[token]
        raise _too_large(total)
    if session.total is not None and total != session.total:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"Content-Range total {total} differs from {session.total}.")
    body = await _body(request)
    if end < start or end >= total or len(body) != end - start + 1:
        raise DataverseError(ErrorCode.BAD_PAYLOAD,
                             f"Content-Range bytes {start}-{end}/{total} does not match a body of {len(body)} bytes.")
    if session.total is None:
        session.total = total
        session.data = bytearray(total)
    session.add(start, body)
    session.name = text_header(request, H.FILE_NAME) or session.name
    if not session.complete:
        return web.Response(status=206, headers={H.ODATA_VERSION: "4.0"})
    del sessions[token]
    writer = Writer(state, user, origin_of(request))
    return _written(writer.set_file(table, key, column, _new_file(state, session.name, session.data, None)))


# --- delete --------------------------------------------------------------------------------------
@routes.delete(COLUMN, name="file_delete")
async def delete(request: web.Request) -> web.Response:
    """Remove a file (a new row version); an empty file column answers 204 without a change."""
    state = state_of(request)
    table = table_for(request)
    key = row_key(request)
    column = request.match_info["column"]
    user = user_of(request)
    if_match = request.headers.get(H.IF_MATCH)
    if column == table.meta.id_column:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The primary id '{column}' of {table.meta.logical_name} cannot "
                             "be cleared.")
    if not _file_column(table, column):  # DELETE <set>(<id>)/<column> clears a plain column
        Writer(state, user, origin_of(request)).update(table, key, {column: None}, if_match or "*")
        return web.Response(status=204, headers={H.ODATA_VERSION: "4.0"})
    writer = Writer(state, user, origin_of(request))
    row = writer.writable(table, key, if_match)
    if row.files and column in row.files:
        writer.set_file(table, key, column, None)
    return web.Response(status=204, headers={H.ODATA_VERSION: "4.0"})
