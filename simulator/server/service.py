"""The server's own time in a virtual-time run: what each request costs, and the queue before it.

In real time the server's time is what its CPU takes. In virtual time the handlers run in no time at
all, so the server's time is modelled instead (scenario `server.model`): a request of some kind
costs `base + per_row x rows + per_kb x KiB` milliseconds, where rows are those it reads or writes
(counted by the handlers through `Work`) and KiB its request and answer bodies; the server works on
at most `concurrency` requests at once, and the others wait their turn, first come first served.

`service_time` (a middleware, inside service protection) takes a place in the queue before the
handler runs, and spends the cost once the answer is known: before a plain answer is returned, or,
for an answer the handler streams itself (a tracked page, a file), as it prepares its headers
(`on_prepare`). Its place is given up then, so a slow client reading a long page holds no place.
Service protection measures a request from admission to its first byte, so it counts the modelled
wait and cost as execution time, as Dataverse counts a request's duration.

In real time the same middleware measures instead (`ServerTime.measuring`): each request's kind,
rows, body bytes and the wall seconds from the handler's start to its answer's first byte, kept up to
MAX_SAMPLES. `python -m bench servermodel` fits the model's defaults to them.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from aiohttp import web

from simulator.clock import Clock, wall_s
from simulator.protocol.odata import SYNCSIM_ROOT
from simulator.scenario import ServiceCost, ServiceModel

from .middlewares import Handler
from .work import CURRENT, Work

KIB = 1024.0
MAX_SAMPLES = 200_000  # measured requests kept (real time)

# Route names (handlers/*.py) by kind of request; anything else under the Web API is "other".
_KINDS = {
    **dict.fromkeys(("csdl", "entity_definitions", "entity_definition", "entity_attributes",
                     "entity_attributes_cast", "entity_keys", "service_document", "service_document_bare"),
                    "metadata"),
    **dict.fromkeys(("list", "retrieve", "count"), "read"),
    **dict.fromkeys(("create", "update", "delete"), "write"),
    **dict.fromkeys(("batch", "create_multiple", "update_multiple", "upsert_multiple", "bulk_delete"), "batch"),
    **dict.fromkeys(("file_download", "file_upload", "file_delete"), "file"),
}


def kind_of(request: web.Request) -> str:
    """The request's kind: metadata, read, delta (a read with a $deltatoken), write, batch, file or other."""
    info = request.match_info.route
    kind = _KINDS.get(info.name or "", "other") if info is not None else "other"
    if kind == "read" and "$deltatoken" in request.query:
        return "delta"
    return kind


def cost_s(cost: ServiceCost, rows: int, body_bytes: int) -> float:
    """Seconds of server time for a request of `rows` rows and `body_bytes` of bodies (both ways)."""
    return (cost.base_ms + cost.per_row_ms * rows + cost.per_kb_ms * body_bytes / KIB) / 1000.0


@dataclass(slots=True)
class ServerTime:
    """The modelled server: its costs, its clock, and the queue for its `concurrency` places."""

    model: ServiceModel
    clock: Clock
    busy: int = 0
    waiting: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)
    served: int = 0
    busy_s: float = 0.0  # server time spent, summed over requests (for the report)
    queued_s: float = 0.0  # time requests waited for a place, summed
    measuring: bool = False  # real time: measure each request instead of modelling it
    samples: list[tuple[str, int, int, float]] = field(default_factory=list)  # (kind, rows, bytes, wall s)

    async def enter(self) -> None:
        """Take a place, waiting first come first served while all `concurrency` are taken."""
        if self.measuring:
            return
        if self.busy < self.model.concurrency and not self.waiting:
            self.busy += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        t0 = self.clock.monotonic()
        try:
            await turn  # the leaver hands its place over (busy unchanged)
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed a place just as we were cancelled: pass it on
            else:
                self.waiting.remove(turn)
            raise
        self.queued_s += self.clock.monotonic() - t0

    def leave(self) -> None:
        """Give the place up: to the first request waiting, if any."""
        if self.measuring:
            return
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy -= 1

    async def charge(self, work: Work, body_bytes: int) -> None:
        """Spend the request's cost (once), then give its place up."""
        if work.charged:
            return
        work.charged = True
        if self.measuring:
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append((work.kind, work.rows, body_bytes, wall_s() - work.started))
            return
        spent = cost_s(getattr(self.model, work.kind), work.rows, body_bytes)
        self.served += 1
        self.busy_s += spent
        try:
            await self.clock.sleep_real(spent)
        finally:
            self.leave()

    def to_dict(self) -> dict[str, object]:
        """Modelled: requests served, server time spent and waited. Measured: per kind, the requests
        and their mean wall milliseconds to the first byte."""
        if not self.measuring:
            return {"concurrency": self.model.concurrency, "requests": self.served, "busy_s": round(self.busy_s, 6),
                    "queued_s": round(self.queued_s, 6)}
        kinds: dict[str, list[float]] = {}
        for kind, _, _, seconds in self.samples:
            kinds.setdefault(kind, []).append(seconds)
        return {"measured": {k: {"requests": len(v), "mean_ms": round(1000 * sum(v) / len(v), 3)}
                             for k, v in sorted(kinds.items())}}


SERVER_TIME: web.AppKey[ServerTime] = web.AppKey("syncsim_server_time", ServerTime)
WORK: web.RequestKey[Work] = web.RequestKey("syncsim_work", Work)


def _bodies(request: web.Request, response: web.StreamResponse) -> int:
    down = response.content_length
    if down is None and isinstance(response, web.Response) and isinstance(response.body, bytes | bytearray):
        down = len(response.body)
    return (request.content_length or 0) + (down or 0)


@web.middleware
async def service_time(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Queue, run the handler, spend the modelled cost (virtual time) or measure it (real time; see
    the module docstring). Not for /_syncsim/: the harness, not the service."""
    server = request.app.get(SERVER_TIME)
    if server is None or request.path.startswith(SYNCSIM_ROOT):
        return await handler(request)
    work = Work(kind_of(request), started=wall_s() if server.measuring else 0.0)
    request[WORK] = work
    await server.enter()
    token = CURRENT.set(work)
    try:
        response = await handler(request)
    except Exception:  # an error answer (the errors middleware writes it): it costs its base
        await server.charge(work, request.content_length or 0)
        raise
    except BaseException:  # cancelled (the client went away): its place is given up
        if not work.charged:
            work.charged = True
            server.leave()
        raise
    finally:
        CURRENT.reset(token)
    if not work.charged:
        await server.charge(work, _bodies(request, response))  # a plain answer: before it is sent
    return response


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """A streamed answer starts: its cost is spent before its headers go out."""
    server = request.app.get(SERVER_TIME)
    work = request.get(WORK)
    if server is not None and work is not None and not work.charged:
        await server.charge(work, _bodies(request, response))
