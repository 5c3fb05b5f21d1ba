"""POST $batch: run the parts of a multipart/mixed batch in order and answer them as one multipart.

Each inner request becomes an aiohttp Request cloned from the outer one (same connection, host,
user and inherited headers) and is run by the handler its URL resolves to, without the middlewares:
a batch counts once for service protection and idempotency. Single-row writes (POST <set>,
PATCH/DELETE <set>(<id>)) go straight to a Writer so a changeset shares one and can be undone as a
whole; bulk actions pick the changeset's Writer up through CHANGESET_WRITER. Content-ID references
(`$n` as the URL or as an `@odata.bind` value) resolve to the row item n created or updated.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from simulator.protocol import ErrorCode, H
from simulator.protocol.batch_codec import (
    BatchAnswer,
    BatchFormatError,
    ChangesetRequest,
    ChangesetResponse,
    PartRequest,
    PartResponse,
    boundary_of,
    content_id_reference,
    encode_batch,
    is_multipart_mixed,
    parse_batch,
    request_target,
)
from simulator.protocol.odata import API_ROOT, MAX_BATCH_REQUESTS
from simulator.server.errors import DataverseError, bad_request
from simulator.server.handlers import writes
from simulator.server.handlers.bulk import CHANGESET_WRITER
from simulator.server.handlers.common import prefer, state_of, user_of
from simulator.server.middlewares import BATCH_PART, error_response
from simulator.server.mutations import Writer

routes = web.RouteTableDef()

# outer headers an inner request does not inherit (the part sets its own, or they describe the batch)
_NOT_INHERITED = frozenset({"content-type", "content-length", "transfer-encoding", "content-id", "prefer",
                            "if-match", "if-none-match", H.IDEMPOTENCY_KEY.lower()})
_NOT_ANSWERED = frozenset({"content-length", "transfer-encoding", "date", "server"})
_ENTITY_PATH = re.compile(re.escape(API_ROOT) + r"/(?P<ref>[^?#]+)$")
_HTTP_CODES = {404: ErrorCode.RESOURCE_NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
               413: ErrorCode.PAYLOAD_TOO_LARGE, 415: ErrorCode.UNSUPPORTED_MEDIA_TYPE}
Write = Callable[[web.Request, Writer], Awaitable[web.Response]]


@routes.post(API_ROOT + "/$batch", name="batch")
async def batch(request: web.Request) -> web.Response:
    """200 multipart/mixed with one part per request; 400 when it stopped at a failure."""
    items = await _read_batch(request)
    continue_on_error = bool({"odata.continue-on-error", "continue-on-error"} & prefer(request).keys())
    run = _BatchRun(request, continue_on_error)
    answers, stopped = await run.execute(items)
    boundary = f"batchresponse_{state_of(request).new_uuid()}"
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}", H.ODATA_VERSION: "4.0"}
    if continue_on_error:
        headers[H.PREFERENCE_APPLIED] = "odata.continue-on-error"
    return web.Response(status=400 if stopped else 200, body=encode_batch(answers, boundary),
                        content_type=None, headers=headers)


async def _read_batch(request: web.Request) -> list[ChangesetRequest | PartRequest]:
    """The parsed batch: 415 if not multipart/mixed, 400 without a boundary or when malformed."""
    ctype = request.headers.get("Content-Type", "")
    if not is_multipart_mixed(ctype):
        raise DataverseError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                             f"Content-Type {ctype!r} is not supported; a $batch is multipart/mixed.")
    boundary = boundary_of(ctype)
    if not boundary:
        raise bad_request("The multipart/mixed Content-Type has no boundary parameter.")
    body = await request.read()
    try:
        return parse_batch(body, boundary, MAX_BATCH_REQUESTS)
    except BatchFormatError as exc:
        raise bad_request(f"The batch request is malformed: {exc}") from None


class _BatchRun:
    """One batch's execution: its outer request, the error mode and the Content-ID references."""

    def __init__(self, outer: web.Request, continue_on_error: bool) -> None:
        self.outer = outer
        self.continue_on_error = continue_on_error
        self.refs: dict[str, str] = {}  # Content-ID -> "<set>(<guid>)" under the service root
        self.inherited = CIMultiDict((k, v) for k, v in outer.headers.items() if k.lower() not in _NOT_INHERITED)

    async def execute(self, items: list[ChangesetRequest | PartRequest]) -> tuple[list[BatchAnswer], bool]:
        """Every answer in request order, and whether processing stopped at a failure."""
        answers: list[BatchAnswer] = []
        for item in items:
            if isinstance(item, ChangesetRequest):
                answer = await self._changeset(item)
            else:
                answer = await self._single(item, Writer(state_of(self.outer), user_of(self.outer)))
            answers.append(answer)
            if isinstance(answer, PartResponse) and answer.status >= 400 and not self.continue_on_error:
                return answers, True
        return answers, False

    async def _changeset(self, changeset: ChangesetRequest) -> BatchAnswer:
        """All the changeset's answers, or one error part after undoing every write it made."""
        writer = Writer(state_of(self.outer), user_of(self.outer))
        answers: list[PartResponse] = []
        try:
            for part in changeset.requests:
                answer = await self._single(part, writer, shared=True)
                if answer.status >= 400:
                    self._roll_back(writer, answers)
                    return answer
                answers.append(answer)
        except BaseException:
            self._roll_back(writer, answers)
            raise
        return ChangesetResponse(answers, f"changesetresponse_{state_of(self.outer).new_uuid()}")

    def _roll_back(self, writer: Writer, answers: list[PartResponse]) -> None:
        writer.undo()
        for answer in answers:
            if answer.content_id is not None:
                self.refs.pop(answer.content_id, None)

    async def _single(self, part: PartRequest, writer: Writer, shared: bool = False) -> PartResponse:
        """Run one request; a DataverseError becomes its error part."""
        try:
            inner = self._inner_request(part)
            response = await _dispatch(inner, writer, shared)
        except DataverseError as err:
            response = error_response(err)
        answer = _answer(response, part.content_id)
        self._remember(answer)
        return answer

    def _remember(self, answer: PartResponse) -> None:
        """Record the row a successful answer names (OData-EntityId) under its Content-ID."""
        if answer.content_id is None or answer.status >= 400:
            return
        entity = next((v for k, v in answer.headers if k.lower() == H.ODATA_ENTITY_ID.lower()), "")
        m = _ENTITY_PATH.search(entity)
        if m:
            self.refs[answer.content_id] = m.group("ref")

    def _resolve(self, cid: str) -> str:
        ref = self.refs.get(cid)
        if ref is None:
            raise bad_request(f"Content-ID Reference: '${cid}' does not exist in the batch context.")
        return ref

    def _target(self, url: str) -> URL:
        """The part's URL as an encoded host-relative URL, with a leading `$n` resolved."""
        reference = content_id_reference(url)
        if reference is not None:
            url = f"{API_ROOT}/{self._resolve(reference[0])}{reference[1]}"
        try:
            return URL(request_target(url, API_ROOT), encoded=True)
        except BatchFormatError as exc:
            raise DataverseError(ErrorCode.RESOURCE_NOT_FOUND, str(exc)) from None

    def _body(self, body: bytes) -> bytes:
        """The body with `"<nav>@odata.bind": "$n"` values replaced by "/<set>(<guid>)"."""
        if b'"$' not in body:
            return body
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # the handler answers the malformed JSON
        if not isinstance(payload, dict):
            return body
        for key, value in payload.items():
            if key.endswith("@odata.bind") and isinstance(value, str):
                reference = content_id_reference(value)
                if reference is not None:
                    payload[key] = f"/{self._resolve(reference[0])}{reference[1]}"
        return orjson.dumps(payload)

    def _inner_request(self, part: PartRequest) -> web.Request:
        """A Request for one part: the outer connection and user, the part's line, headers and body.

        aiohttp's `clone()` refuses a request whose body was read and cannot take a new body, so the
        read cache (`_read_bytes`) is set aside around the clone and then filled with the part's body.
        """
        headers = CIMultiDict(self.inherited)
        for name in {name for name, _ in part.headers}:
            headers.popall(name, None)
        headers.extend(part.headers)
        target, body = self._target(part.url), self._body(part.body)
        outer = self.outer
        saved, outer._read_bytes = outer._read_bytes, None
        try:
            inner = outer.clone(method=part.method, rel_url=target, headers=headers)
        finally:
            outer._read_bytes = saved
        inner._read_bytes = body
        inner[BATCH_PART] = True  # its answer must be a whole in-memory response, never streamed
        return inner


async def _dispatch(inner: web.Request, writer: Writer, shared: bool) -> web.StreamResponse:
    """Route an inner request: single-row writes through `writer`, anything else to its handler."""
    match = await inner.app.router.resolve(inner)
    if match.http_exception is not None:
        status = match.http_exception.status
        raise DataverseError(_HTTP_CODES.get(status, ErrorCode.BAD_PAYLOAD),
                             f"Resource not found for the segment '{inner.path}'." if status == 404
                             else f"{inner.method} is not allowed on '{inner.path}'.")
    match.add_app(inner.app)
    match.freeze()
    inner._match_info = match
    write = _WRITES.get(match.handler)
    if write is not None:
        return await write(inner, writer)
    if shared:
        inner[CHANGESET_WRITER] = writer
    try:
        return await match.handler(inner)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        raise DataverseError(_HTTP_CODES.get(exc.status, ErrorCode.BAD_PAYLOAD), exc.reason) from None


_WRITES: dict[object, Write] = {writes.create: writes.create_with, writes.update: writes.update_with,
                                writes.delete: writes.delete_with}


def _answer(response: web.StreamResponse, content_id: str | None) -> PartResponse:
    """A handler's response as a batch part (only complete, in-memory responses can be carried)."""
    body = response.body if isinstance(response, web.Response) else False
    if not isinstance(body, bytes | bytearray | None):
        response = error_response(DataverseError(ErrorCode.BAD_PAYLOAD, "This response cannot be carried in a $batch."))
        body = response.body
        assert isinstance(body, bytes)  # json_response's body is orjson bytes
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _NOT_ANSWERED]
    return PartResponse(response.status, headers, bytes(body or b""), content_id)
