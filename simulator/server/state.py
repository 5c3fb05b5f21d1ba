"""Everything one server instance holds, kept under a single AppKey (aiohttp's typed app state)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator import seeds
from simulator.clock import Clock
from simulator.health import ProcessHealth
from simulator.scenario import Faults, Scenario
from simulator.server.access import Access
from simulator.server.store import Store, User
from simulator.server.work import count_rows
from simulator.server.write_log import WriteLog


@dataclass(slots=True)
class Counters:
    """What /_syncsim/counters reports. Keys are plain strings so the JSON stays flat."""

    requests: Counter[str] = field(default_factory=Counter)  # "<route> <status>"
    rows_served: int = 0
    bytes_served: int = 0
    file_bytes_served: int = 0
    conflicts: Counter[str] = field(default_factory=Counter)  # "<table>/<user>"
    rejections: Counter[str] = field(default_factory=Counter)  # "<table>/<user>"
    throttles: Counter[str] = field(default_factory=Counter)  # "<limit>"
    faults: Counter[str] = field(default_factory=Counter)  # injected fault kind -> times
    writes_applied: int = 0
    delta_continuations: int = 0  # continuation pages of deltas served (a path the ledger wants reached)

    def served(self, rows: int = 0, nbytes: int = 0) -> None:
        """Rows and body bytes served by the current request."""
        self.rows_served += rows
        self.bytes_served += nbytes
        count_rows(rows)

    def wrote(self, rows: int = 1) -> None:
        """Rows written by the current request (or the back office)."""
        self.writes_applied += rows
        count_rows(rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": dict(self.requests),
            "rows_served": self.rows_served,
            "bytes_served": self.bytes_served,
            "file_bytes_served": self.file_bytes_served,
            "conflicts": dict(self.conflicts),
            "conflicts_total": sum(self.conflicts.values()),
            "rejections": dict(self.rejections),
            "rejections_total": sum(self.rejections.values()),
            "throttles": dict(self.throttles),
            "faults": dict(self.faults),
            "writes_applied": self.writes_applied,
            "delta_continuations": self.delta_continuations,
        }


@dataclass(slots=True)
class Token:
    user: User
    expires_at: float  # scenario time


class LRU(OrderedDict[Any, Any]):
    """A small least-recently-used cache."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class PageCache:
    """Assembled initial-read pages shared by users with the same view, within a byte budget.

    A page is kept only when asked for a second time, so one-off pages cost nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._pages: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._asked: LRU = LRU(8192)  # keys requested once

    def get(self, key: tuple[object, ...]) -> bytes | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def wants(self, key: tuple[object, ...]) -> bool:
        """True when this page was asked for before (so keep it); otherwise remember the ask."""
        if self._asked.get(key) is not None:
            return True
        self._asked.put(key, True)
        return False

    def put(self, key: tuple[object, ...], page: bytes) -> None:
        if len(page) > self.max_bytes // 8 or key in self._pages:
            return
        self._pages[key] = page
        self.bytes += len(page)
        while self.bytes > self.max_bytes:
            _, old = self._pages.popitem(last=False)
            self.bytes -= len(old)


class ServerState:
    """The store, the scenario's settings, the clock, tokens, counters, faults and caches."""

    def __init__(self, scenario: Scenario, store: Store, clock: Clock, admin_key: str | None = None) -> None:
        self.scenario = scenario
        self.settings = scenario.server
        self.store = store
        self.clock = clock
        self.started_at = clock.now()
        store.touch_cutoff = self.started_at
        self.admin_key = admin_key or secrets.token_urlsafe(24)
        self.tokens: dict[str, Token] = {}
        self.counters = Counters()
        self.faults: Faults = scenario.server.faults
        self.rng = seeds.scenario_rng(scenario.seed, seeds.SERVER)
        self.token_rng = seeds.scenario_rng(scenario.seed, seeds.TOKENS)  # tokens, session ids, boundaries
        self.access = Access(store, scenario, anchor=self.started_at)
        # idempotency: (user index, key) -> (request fingerprint, status, headers, body)
        self.idempotency: OrderedDict[tuple[int, str], tuple[bytes, int, dict[str, str], bytes]] = OrderedDict()
        self.idempotency_max = 200_000
        self.back_office_enabled = True  # PUT /_syncsim/activity pauses it
        self.delta_cache = LRU(256)  # (user, table, device, from, to) -> delta items, for paging
        self.query_cache = LRU(32)
        self.page_cache = PageCache(256 * 1024 * 1024)  # non-final initial-read pages  # plain queries: sorted keys and counts per store version
        self.upload_sessions: dict[str, Any] = {}  # chunked file uploads by session token
        self.write_log = WriteLog(seed_version=store.version)  # the server's side of the run's ledger
        self.file_crcs: dict[str, int] = {}  # file id -> CRC-32 of its bytes (end-of-run snapshots)
        self.activity_tasks: list[asyncio.Task[None]] = []  # privilege schedule and back office
        self.health = ProcessHealth()  # the server process's loop lag, CPU and memory, every second
        self.runs = 0  # runs started on this server (POST /_syncsim/run): from the second on, it re-seeds
        for table in store.tables.values():
            detect = table.meta.conflict_detection
            table.conflict_detection = self.settings.conflict_detection if detect is None else detect

    @property
    def faults_on(self) -> bool:
        """Whether any server fault is set."""
        f = self.faults
        return bool(f.latency_ms or f.error_rate or f.drop_rate or f.lose_answer_rate or f.cut_rate)

    def issue_token(self, user: User) -> tuple[str, float]:
        """A new bearer token for a user; returns (token, lifetime in scenario seconds)."""
        token = self.new_token(24)
        ttl = self.settings.token_ttl_s
        self.tokens[token] = Token(user, self.clock.now() + ttl)
        return token, ttl


    def new_token(self, nbytes: int) -> str:
        """A fresh URL-safe token of `nbytes` random bytes, drawn from the scenario's seed."""
        return base64.urlsafe_b64encode(self.token_rng.bytes(nbytes)).rstrip(b"=").decode("ascii")

    def new_uuid(self) -> uuid.UUID:
        """A fresh random (version 4) UUID, drawn from the scenario's seed."""
        return uuid.UUID(bytes=self.token_rng.bytes(16), version=4)


STATE: web.AppKey[ServerState] = web.AppKey("syncsim_state", ServerState)
