"""One device's connection: the online / airplane state plus the HTTP transport that applies the
network model (latency, loss, bandwidth, TCP/TLS connections) to every request.

Timing of one request, all in real seconds read from the injected clock (L drawn per request):
    set-up if the modelled connection is new (L for TCP, + L for TLS 1.3)  ->  latency L
    ->  loss draw  ->  request headers + B_up body bytes up  ->  server time
    ->  response headers + B_down body bytes down
where each direction takes `Connection.leg_s`: its bytes on the wire (payload x 1514/1448, x TLS
framing) over the bandwidth, plus slow start's waits on the connection's window. So on a kept-alive
connection with an open window, B bytes down at W kbps take
L + (H_up) + (H_down + B) * 1514/1448 * 8 / (W * 1000) plus server time (H: header bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from ..clock import Clock, ReadDeadline, Timeline
from .errors import AirplaneModeError, NetworkError
from .faults import Tcp, Throttle
from .model import NetworkModel

CHUNK_BYTES = 16 * 1024
"""Size in bytes of the pieces bodies are streamed and paced in, both ways."""

# aiohttp's own timeouts are switched off: `timeout_s` (a read timeout) is the one deadline, and the session default
# (300 s total) would cut long paced downloads that are within the caller's budget.
_NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(total=None)

Sink = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Response:
    """What came back. elapsed_s is real seconds from the call to the last byte, latency included;
    bytes_down / bytes_up count body bytes only (no headers); body is empty when a sink was given."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    elapsed_s: float
    bytes_down: int
    bytes_up: int


class Link:
    """One device's network connection, shared by all of that device's requests.

    Small on purpose (one per simulated device): no tasks or buffers while idle. Requests in flight
    are tracked by their asyncio task, so `go_offline` can cut them by cancelling those tasks; the
    cancellation is turned into AirplaneModeError and the HTTP connection is closed.

    `session` is either a client session shared with other links (tests, benchmarks) or a factory
    of the device's own: then the device has its own small connection pool, as a phone's HTTP
    client has, opened at its first request and closed by `close()`. The model decides when the
    device's connection is new and this pool follows it: whenever the model opens a new connection
    with no other request of the device in flight (first request, after a failed request, after
    the keep-alive, on another network) the pool's connections are dropped, so the server sees a
    new connection exactly when the model charges one; airplane mode drops them too.

    `timeline` is the device's lived time (its ApiClient waits through it): the keep-alive is
    measured on it, so the device's own work counts its real seconds and a wait between syncs its
    scenario seconds, as a phone lives them; and the link hears of each wait as it starts
    (`Timeline.on_sleep`), ending at once the connections the wait will outlive, so an idle device
    holds no socket through it. Without a timeline the keep-alive counts scenario time.
    """

    __slots__ = ("model", "clock", "timeline", "lived", "_session", "_pool", "_online", "_in_flight",
                 "_online_event")

    def __init__(self, model: NetworkModel, clock: Clock,
                 session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession],
                 timeline: Timeline | None = None) -> None:
        self.model = model
        self.clock = clock
        self.timeline = timeline
        self.lived: Callable[[], float] = clock.now if timeline is None else timeline.now
        if timeline is not None:
            timeline.on_sleep = self._idle_for
        own = not isinstance(session, aiohttp.ClientSession)
        self._session: aiohttp.ClientSession | None = None if own else session  # type: ignore[assignment]
        self._pool: Callable[[], aiohttp.ClientSession] | None = session if own else None  # type: ignore[assignment]
        self._online = True
        self._in_flight: dict[asyncio.Task[object], bool] = {}  # task -> cut by go_offline
        self._online_event: asyncio.Event | None = None  # created only while someone waits

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session requests go through: the shared one, or the device's own (opened on first use)."""
        if self._session is None or (self._pool is not None and self._session.closed):
            assert self._pool is not None
            self._session = self._pool()
        return self._session

    @property
    def owns_connections(self) -> bool:
        return self._pool is not None

    def _drop_connections(self) -> None:
        """The device's own connections are gone (airplane mode, or the model ended them): its next
        request opens a new one."""
        if self._pool is not None and self._session is not None:
            closing = asyncio.ensure_future(self._session.close())
            closing.add_done_callback(_closed)
            self._session = None

    def _idle_for(self, scenario_s: float) -> None:
        """The device starts a wait of `scenario_s` (its timeline says so): if no idle connection
        will outlive it, they end now, modelled and real, instead of at the device's next request."""
        if self._in_flight or self.model.keeps(self.lived() + scenario_s):
            return
        self.model.connections.expire()
        self._drop_connections()

    async def close(self) -> None:
        """Close the device's own connections (a shared session is its owner's to close)."""
        self.model.drop_connections()
        if self._pool is not None and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def online(self) -> bool:
        """False while in airplane mode."""
        return self._online

    def go_offline(self) -> None:
        """Airplane mode on: new requests fail at once, requests in flight fail promptly; every
        connection ends, real and modelled."""
        self._online = False
        for task, cut in self._in_flight.items():
            if not cut:
                self._in_flight[task] = True
                task.cancel("airplane mode")
        self._drop_connections()
        self.model.drop_connections()

    def go_online(self) -> None:
        """Airplane mode off; wakes `wait_online` callers."""
        self._online = True
        if self._online_event is not None:
            self._online_event.set()
            self._online_event = None

    async def wait_online(self) -> None:
        """Return once the link is online (at once if it already is)."""
        while not self._online:
            if self._online_event is None:
                self._online_event = asyncio.Event()
            await self._online_event.wait()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        sink: Sink | None = None,
        timeout_s: float = 60,
    ) -> Response:
        """Send one HTTP request through the network model and read the whole response.

        sink: if given, each received body chunk of a 2xx answer is passed to it instead of being kept
        (big files); the body of any other answer is kept in `Response.body` as usual.
        timeout_s: real seconds the request may go without progress, as a phone's HTTP client's read
        timeout: for the answer to start after the request is sent (connecting, uploading, server
        time), and between two pieces of its body; exceeding it raises NetworkError. A slow answer
        that keeps coming is never cut (a fleet that saturates the generator slows every download
        down; a whole-request deadline would cut them all, and every retry again). HTTP error statuses are returned, not raised.
        Raises AirplaneModeError if offline or cut by `go_offline`, NetworkError on loss, connection
        failure or timeout.
        """
        if not self._online:
            raise AirplaneModeError(f"{method} {url}: device is offline (airplane mode)")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Link.request must run inside an asyncio task")
        self._in_flight[task] = False
        got = _Received()
        try:
            try:
                response = await self._exchange(method, url, headers, body, sink, timeout_s, got)
            except asyncio.CancelledError:
                if not self._in_flight[task]:
                    raise  # not cut by us
            except Exception as exc:
                if not self._in_flight[task]:
                    if isinstance(exc, NetworkError):
                        exc.bytes_down = got.bytes
                    raise
                await _take_pending_cancel()  # the cut raced with another failure
            else:
                if not self._in_flight[task]:
                    return response
                await _take_pending_cancel()  # cut after the last await
            if task.uncancel() > 0:
                raise asyncio.CancelledError  # also cancelled by someone else: theirs wins
            raise AirplaneModeError(f"{method} {url}: cut by airplane mode", got.bytes)
        finally:
            del self._in_flight[task]

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        body: bytes | None,
        sink: Sink | None,
        timeout_s: float,
        got: _Received,
    ) -> Response:
        """Connection set-up, latency, loss, then the HTTP exchange; aiohttp failures become
        NetworkError. The modelled connection is reused only after a success."""
        model = self.model  # a network change during the request does not move it
        start_s = self.clock.monotonic()
        rtt_s = model.draw_latency_s()
        tcp, setup_s = model.open(self.lived(), start_s, rtt_s)
        if tcp.fresh and len(self._in_flight) == 1:
            self._drop_connections()  # the model's connection is new: so is the real one
        if setup_s + rtt_s > 0:
            await self.clock.sleep_real(setup_s + rtt_s)
        if model.draw_lost():
            raise NetworkError(f"{method} {url}: packet loss (p={model.loss.probability})")
        try:
            async with ReadDeadline(timeout_s) as deadline:  # something arrived: it starts again
                status, resp_headers, data, bytes_down = await self._send(
                    model, tcp, rtt_s, method, url, headers, body, sink, got, deadline.progress)
        except TimeoutError as e:
            raise NetworkError(f"{method} {url}: nothing received for {timeout_s} s") from e
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise NetworkError(f"{method} {url}: {type(e).__name__}: {e}") from e
        end_s = self.clock.monotonic()
        model.close(tcp, self.lived(), end_s, len(body or b""), bytes_down)
        return Response(status, resp_headers, data, end_s - start_s, bytes_down, len(body or b""))

    async def _send(
        self, model: NetworkModel, tcp: Tcp, rtt_s: float, method: str, url: str,
        headers: dict[str, str] | None, body: bytes | None, sink: Sink | None, got: _Received,
        progress: Callable[[], None],
    ) -> tuple[int, CIMultiDictProxy[str], bytes, int]:
        """Send the request, read the paced response; on any failure close (not reuse) the connection."""
        req_headers = CIMultiDict(headers or {})
        data: bytes | AsyncIterator[bytes] | None = body
        if body and model.up is not None:
            req_headers.setdefault("Content-Length", str(len(body)))
            data = self._paced_upload(body, lambda n: model.upload_s(tcp, rtt_s, n), progress)
        else:  # headers only, or an unlimited up link: the request's time before it is sent
            await self._wait(model.upload_s(tcp, rtt_s, len(body or b"")))
        resp = await self.session.request(
            method, url, headers=req_headers, data=data, timeout=_NO_AIOHTTP_TIMEOUT
        )
        progress()
        try:
            received, bytes_down = await self._paced_download(
                resp, sink if resp.status < 300 else None, got, lambda n: model.download_s(tcp, rtt_s, n),
                progress)
        except BaseException:
            resp.close()
            raise
        resp.release()
        return resp.status, CIMultiDictProxy(CIMultiDict(resp.headers)), received, bytes_down

    async def _paced_upload(self, body: bytes, due: Callable[[int], float],
                            progress: Callable[[], None]) -> AsyncIterator[bytes]:
        """The request body in chunks, each released once the model's up schedule has carried it
        (the request's headers first); `progress` is told of every piece."""
        throttle = Throttle(None, self.clock.monotonic(), due)
        for offset in range(0, len(body), CHUNK_BYTES):
            chunk = body[offset : offset + CHUNK_BYTES]
            throttle.add(len(chunk))
            await self._pace(throttle)
            progress()
            yield chunk

    async def _paced_download(self, resp: aiohttp.ClientResponse, sink: Sink | None,
                              got: _Received, due: Callable[[int], float],
                              progress: Callable[[], None]) -> tuple[bytes, int]:
        """Read the response body paced to the model's down schedule (headers first, then the body
        on the wire, slow start); returns (body or b"", byte count). `got.bytes` follows the bytes
        through, so a cut can say how many arrived; `progress` is told of every piece."""
        throttle = Throttle(None, self.clock.monotonic(), due)
        chunks: list[bytes] = []
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            throttle.add(len(chunk))
            await self._pace(throttle)
            progress()
            got.bytes += len(chunk)
            if sink is None:
                chunks.append(chunk)
            else:
                sink(chunk)
        await self._pace(throttle)  # an empty body still brings its headers
        return b"".join(chunks), throttle.sent_bytes

    async def _wait(self, seconds: float) -> None:
        if seconds > 0:
            await self.clock.sleep_real(seconds)

    async def _pace(self, throttle: Throttle) -> None:
        """Sleep (real seconds, on the injected clock) until the throttle's schedule is met."""
        wait_s = throttle.wait_s(self.clock.monotonic())
        if wait_s > 0:
            await self.clock.sleep_real(wait_s)


class _Received:
    """Body bytes of one response received so far (read after a cut)."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


async def _take_pending_cancel() -> None:
    """Let a cancellation requested after the task's last await arrive here and swallow it, so it
    cannot fire later in the caller. A scheduling yield, not a wait: no time passes."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)


def _closed(task: asyncio.Future[None]) -> None:
    """A dropped session finished closing; its error, if any, is of no interest (the link is gone)."""
    if not task.cancelled():
        task.exception()
