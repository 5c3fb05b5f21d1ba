"""Injected server faults (scenario `server.faults`, or PUT /_syncsim/faults), one function each.

- latency: a delay before the request is handled (real seconds, counted as server time);
- drop: the connection is closed before anything is done;
- error: a 503 before anything is done;
- lose_answer: a write is applied, then the connection is closed without its answer;
- cut: an answer with a body (a page, a file range) stops half-way and the connection is closed.

Every fault injected is counted in `counters.faults` by kind. Draws come from the server's seeded
generator. `/_syncsim/` calls never get faults.
"""

from __future__ import annotations

from aiohttp import web

from simulator.protocol import ErrorCode
from simulator.server.errors import DataverseError
from simulator.server.state import ServerState

WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
MIN_CUT_BYTES = 2  # an answer shorter than this cannot be cut half-way


class CutShort(Exception):
    """An answer was cut by fault injection; its connection is closed."""


def _draw(state: ServerState, rate: float, kind: str) -> bool:
    if rate <= 0 or state.rng.random() >= rate:
        return False
    state.counters.faults[kind] += 1
    return True


def _close(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def before(state: ServerState, request: web.Request) -> None:
    """Latency, then a dropped connection or a 503, before the handler runs."""
    f = state.faults
    if f.latency_ms:
        await state.clock.sleep_real(f.latency_ms / 1000)
    if _draw(state, f.drop_rate, "drop"):
        _close(request)
        raise DataverseError(ErrorCode.SERVICE_UNAVAILABLE, "Connection dropped by fault injection.")
    if _draw(state, f.error_rate, "error"):
        raise DataverseError(ErrorCode.SERVICE_UNAVAILABLE, "Service unavailable (fault injection).")


async def after(state: ServerState, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """A write's answer lost after it was applied, or an in-memory answer cut half-way."""
    if request.method in WRITES and response.status < 500 and _draw(state, state.faults.lose_answer_rate, "lose_answer"):
        _close(request)
        raise DataverseError(ErrorCode.SERVICE_UNAVAILABLE, "Answer lost by fault injection (the write was applied).")
    body = response.body if isinstance(response, web.Response) else None
    if request.method == "GET" and isinstance(body, bytes) and response.status < 300:
        cut = cut_point(state, len(body))
        if cut is not None:
            stream = web.StreamResponse(status=response.status, headers=response.headers)
            stream.content_length = len(body)
            await stream.prepare(request)
            await stream.write(body[:cut])
            _close(request)
            return stream
    return response


def cut_point(state: ServerState, length: int) -> int | None:
    """Bytes of a `length`-byte answer to send before cutting it, or None to send it all."""
    if length < MIN_CUT_BYTES or not _draw(state, state.faults.cut_rate, "cut"):
        return None
    return length // 2


class CuttableStream:
    """Writes a streamed answer, cutting it (CutShort, connection closed) at `cut` bytes if set."""

    __slots__ = ("request", "response", "cut", "sent")

    def __init__(self, request: web.Request, response: web.StreamResponse, cut: int | None) -> None:
        self.request, self.response, self.cut, self.sent = request, response, cut, 0

    async def write(self, data: bytes | memoryview) -> None:
        if self.cut is not None and self.sent + len(data) >= self.cut:
            await self.response.write(data[: self.cut - self.sent])
            _close(self.request)
            raise CutShort
        await self.response.write(data)
        self.sent += len(data)
