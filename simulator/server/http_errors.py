"""Requests aiohttp refuses before the app runs, answered with Dataverse's error body.

aiohttp's HTTP parser answers a request it cannot read (a request line or header past its limits,
an invalid Content-Length, bytes that are not HTTP) itself, with a text/plain 400, before any
middleware runs; an exception that escapes the middlewares becomes its text/plain 500. The servers
`start_server` runs (`syncsim serve`, `syncsim run`, the fuzzer) use `DataverseRunner`, whose
connections answer those with `{"error": {"code", "message"}}` and `OData-Version: 4.0` instead.
(aiohttp's test client builds its own runner, so unit tests still see aiohttp's own answer.)

`HANDLER_ARGS` (given to the Application, so every runner applies them) lets request lines up to
Dataverse's URL limit of 32,768 characters through; headers keep aiohttp's 8,190-byte limit.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.protocol import ErrorCode, error_body
from simulator.server.middlewares import json_response

MAX_URL_CHARS = 32_768  # Dataverse's documented maximum GET URL length
HANDLER_ARGS: dict[str, Any] = {"max_line_size": MAX_URL_CHARS + len("OPTIONS  HTTP/1.1")}
_CODES = {400: ErrorCode.BAD_PAYLOAD, 413: ErrorCode.PAYLOAD_TOO_LARGE}


class DataverseRequestHandler(web.RequestHandler):
    """One connection's protocol: aiohttp's, with error answers in Dataverse's shape."""

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The error answer aiohttp makes itself (logged and checked by aiohttp, as always), as JSON."""
        super().handle_error(request, status, exc, message)  # logs; raises if an answer had already started
        code = _CODES.get(status, ErrorCode.INTERNAL)
        text = (f"The request could not be read: {message}" if status < 500 and message
                else "An unexpected error occurred while processing the request.")
        answer = json_response(error_body(code, text[:500]), status)
        answer.force_close()
        return answer


class _Server(web.Server):
    """aiohttp's low-level server (the protocol factory), making DataverseRequestHandler connections."""

    def __call__(self) -> web.RequestHandler:
        return DataverseRequestHandler(self, loop=self._loop, **self._kwargs)


class DataverseRunner(web.AppRunner):
    """An AppRunner whose connections answer parser errors (and unhandled 500s) with Dataverse's error body."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # the app's handler, request factory and handler arguments
        return _Server(server.request_handler, request_factory=server.request_factory,
                       handler_cancellation=server.handler_cancellation, loop=server._loop, **server._kwargs)
