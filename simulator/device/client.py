"""The device's Web API client: auth, retries with backoff, 429 Retry-After, airplane-mode resume.

A request cut by airplane mode waits for the network and is sent again (a restart); a network
failure or a 5xx is retried with exponential backoff; a 429 waits Retry-After. Waits go through the
device's `Timeline` (scenario seconds, counted at full length in sync durations). What one sync
spent is added to a `Tally`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from simulator.clock import Clock, Timeline
from simulator.events import Events
from simulator.metrics import DeviceEvent
from simulator.network import AirplaneModeError, Link, NetworkError, Response
from simulator.protocol import H

TokenProvider = Callable[[], Awaitable[str]]
RETRYABLE = {500, 502, 503, 504}


class SyncFailed(Exception):
    """A sync that cannot finish: `code` is the cause (STORAGE_FULL, NETWORK, HTTP_<status>, 0x...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Tally:
    """What one sync spent: real seconds in requests, bytes per table, restarts, throttles, body
    bytes received by requests that were then cut and sent again (`refetched_bytes`), and real
    seconds of the device's own work (`processing_s`: storing rows, writing files, metadata)."""

    active_s: float = 0.0
    bytes_by_table: dict[str, int] = field(default_factory=dict)
    file_bytes: int = 0
    refetched_bytes: int = 0
    restarts: int = 0
    throttles: int = 0
    requests: int = 0
    processing_s: float = 0.0


@dataclass(slots=True)
class Identity:
    device: str
    user: str
    user_class: str


class ApiClient:
    """Sends requests for one device through its Link."""

    __slots__ = ("link", "clock", "timeline", "base_url", "tokens", "who", "events", "max_retries", "_token",
                 "backoff_s", "first_sent_at")

    def __init__(self, link: Link, clock: Clock, base_url: str, tokens: TokenProvider, who: Identity,
                 events: Events, max_retries: int = 6, backoff_s: float = 2.0) -> None:
        self.link = link
        self.clock = clock
        # the device's lived time: every wait of its syncs goes through it; the link's when it has one
        # (its keep-alive is measured on it), so both count the same waits
        self.timeline = link.timeline if link.timeline is not None else Timeline(clock)
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.who = who
        self.events = events
        self.max_retries = max_retries
        self.backoff_s = backoff_s  # first retry wait, scenario seconds; doubles per attempt
        self._token: str | None = None
        self.first_sent_at: float | None = None  # lived time the device's first request was sent

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def _event(self, kind: Any, detail: str) -> None:
        self.events.device_event.fire(event=DeviceEvent(self.who.device, self.who.user_class, kind, self.clock.now(), detail))

    async def call(self, method: str, path: str, tally: Tally, *, json: Any = None, body: bytes | None = None,
                   headers: dict[str, str] | Callable[[], dict[str, str]] | None = None,
                   sink: Callable[[bytes], None] | None = None,
                   reader: Callable[[], Callable[[bytes], None]] | None = None,
                   table: str | None = None, accept: tuple[int, ...] = ()) -> Response:
        """One logical request; returns the response for 2xx/3xx, 4xx statuses in `accept`, else raises SyncFailed.

        `headers` may be a function, called for every attempt (a Range that resumes where a cut
        attempt stopped). `sink` receives the body of a 2xx answer instead of `Response.body`, and
        keeps what it received across attempts (a file's bytes). `reader` instead gives a sink per
        attempt, which starts over from the body's first byte (a page parsed as it streams in): the
        bytes of a cut attempt count as re-fetched.
        """
        url = self.url(path)
        payload = orjson.dumps(json) if json is not None else body
        attempt = 0
        refreshed = False
        while True:
            if self._token is None:
                self._token = await self._new_token()
            hdrs = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                    H.ODATA_VERSION: "4.0", "OData-MaxVersion": "4.0", H.DEVICE_ID: self.who.device,
                    **((headers() if callable(headers) else headers) or {})}
            if json is not None:
                hdrs["Content-Type"] = "application/json"
            sent_at = self.timeline.now()
            if self.first_sent_at is None:
                self.first_sent_at = sent_at
            try:
                resp = await self.link.request(method, url, headers=hdrs, body=payload,
                                               sink=sink if reader is None else reader())
            except NetworkError as exc:
                self._fired(method, path, 0, sent_at, exc.bytes_down, type(exc).__name__)
                tally.refetched_bytes += 0 if sink else exc.bytes_down  # a sink kept its bytes
                if not isinstance(exc, AirplaneModeError):
                    attempt = await self._backoff(attempt, f"{method} {path}: {exc}", "NETWORK")
                    continue
                tally.restarts += 1
                self._event("restart", f"{method} {path}: cut by airplane mode")
                await self.timeline.wait(self.link.wait_online(), "offline")
                continue
            tally.requests += 1
            tally.active_s += resp.elapsed_s
            nbytes = resp.bytes_down + resp.bytes_up
            if table is not None:
                tally.bytes_by_table[table] = tally.bytes_by_table.get(table, 0) + nbytes
            self._fired(method, path, resp.status, sent_at, nbytes, None if resp.status < 400 else str(resp.status))
            if resp.status < 400 or resp.status in accept:
                return resp
            if resp.status == 429:
                tally.throttles += 1
                wait = _retry_after(resp)
                self._event("throttled", f"{method} {path}: Retry-After {wait:g}s")
                await self.timeline.sleep(wait, "retry_after")
                continue
            if resp.status == 401 and not refreshed:
                self._token, refreshed = None, True
                continue
            if resp.status in RETRYABLE:
                attempt = await self._backoff(attempt, f"{method} {path}: HTTP {resp.status}", f"HTTP_{resp.status}")
                continue
            raise SyncFailed(_error_code(resp), f"{method} {path}: HTTP {resp.status} {_error_message(resp)}")

    def _fired(self, method: str, path: str, status: int, sent_at: float, nbytes: int, error: str | None) -> None:
        """The request event: status 0 when the network failed or airplane mode cut it."""
        ended_at = self.timeline.now()
        self.events.request.fire(method=method, name=_name(path), status=status, elapsed_s=ended_at - sent_at,
                                 bytes=nbytes, error=error, device=self.who.device, started_at=sent_at,
                                 ended_at=ended_at)

    async def _new_token(self) -> str:
        """A bearer token from the provider; a provider that fails fails the sync (cause AUTH)."""
        try:
            return await self.tokens()
        except Exception as exc:  # the provider's own transport: any failure is the sync's failure
            raise SyncFailed("AUTH", f"could not get a token: {type(exc).__name__}: {exc}") from exc

    async def _backoff(self, attempt: int, what: str, code: str) -> int:
        if attempt >= self.max_retries:
            raise SyncFailed(code, f"{what} (gave up after {attempt + 1} attempts)")
        self._event("retry", what)
        await self.timeline.sleep(self.backoff_s * (2**attempt), "backoff")
        return attempt + 1


def _name(path: str) -> str:
    """A stable request name for statistics: the path without keys and query."""
    base = path.split("?", 1)[0]
    if "/api/data/v9.2/" in base:
        base = base.split("/api/data/v9.2/", 1)[1]
    head = base.split("(", 1)[0]
    return head + ("(id)" + base.split(")", 1)[1] if "(" in base and ")" in base else "")


def _retry_after(resp: Response) -> float:
    try:
        return max(0.0, float(resp.headers.get(H.RETRY_AFTER, "1")))
    except ValueError:
        return 1.0


def _error_json(resp: Response) -> dict[str, Any]:
    try:
        data = orjson.loads(resp.body)
        return data.get("error", {}) if isinstance(data, dict) else {}
    except orjson.JSONDecodeError:
        return {}


def _error_code(resp: Response) -> str:
    return str(_error_json(resp).get("code") or f"HTTP_{resp.status}")


def _error_message(resp: Response) -> str:
    return str(_error_json(resp).get("message") or resp.body[:200].decode("utf-8", "replace"))
