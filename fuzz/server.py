"""The server under fuzz: a syncsim server on loopback, in a thread of its own, on a manual clock.

The fuzzer talks to it over real HTTP (a TCP socket on 127.0.0.1), and reads its state directly
(`snapshot()`, run on the server's own event loop) to tell whether a refused request changed
anything. The clock only moves when the fuzzer moves it (an expired token), so tokens, delta tokens
and throttling windows behave the same on every run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from simulator.clock import ManualClock
from simulator.scenario import Scenario, load_scenario, parse_scenario
from simulator.server.serve import RunningServer, start_server
from simulator.server.state import STATE, ServerState

T = TypeVar("T")

MAX_BODY_MB = 0.25  # the fuzz server's body limit: oversized bodies stay cheap to send
REQUEST_LIMIT = 10_000_000  # service protection is not what is fuzzed: a manual clock never slides its window


def fuzz_scenario(source: Scenario | dict[str, Any] | str | Path, max_body_mb: float = MAX_BODY_MB) -> Scenario:
    """A scenario made ready for fuzzing: no back office and no privilege schedule (only the fuzzer
    changes the store, so a snapshot difference is the fuzzer's request), no faults, a small body
    limit and a request limit out of reach."""
    if isinstance(source, Scenario):
        data = source.model_dump(mode="json", exclude_unset=True)
    elif isinstance(source, dict):
        data = dict(source)
    else:
        data = load_scenario(source).model_dump(mode="json", exclude_unset=True)
    server = dict(data.get("server") or {})
    limits = dict(server.get("limits") or {})
    limits["requests"] = REQUEST_LIMIT
    server.update(limits=limits, max_body_mb=max_body_mb, faults={})
    data.update(server=server, privilege_changes=[], back_office={"writes_per_s": 0, "file_deletes_per_s": 0})
    return parse_scenario(data)


@dataclass(frozen=True)
class Snapshot:
    """What a refused request must leave as it was: the store's global row version, the rows of every
    table, and the writes in the write log (refused device ops may be appended to its refusals)."""

    version: int
    rows: tuple[tuple[str, int], ...]
    writes: int

    def diff(self, after: Snapshot) -> str:
        """What changed from this snapshot to `after` ("" when nothing did)."""
        out = []
        if after.version != self.version:
            out.append(f"store.version {self.version} -> {after.version}")
        for (table, before), (_, now) in zip(self.rows, after.rows, strict=True):
            if before != now:
                out.append(f"{table} rows {before} -> {now}")
        if after.writes != self.writes:
            out.append(f"write_log.writes {self.writes} -> {after.writes}")
        return ", ".join(out)


def take_snapshot(state: ServerState) -> Snapshot:
    tables = tuple((name, len(t.rows)) for name, t in state.store.tables.items())
    return Snapshot(state.store.version, tables, len(state.write_log.writes))


class _Tracebacks(logging.Handler):
    """Keeps what aiohttp logs when a handler raises (the cause of a 500), one line per error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/simulator/" in f.filename]
            where = f" at {frames[-1].filename.split('/simulator/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name}" \
                if frames else ""
            self.lines.append(f"{type(exc).__name__}: {str(exc)[:200]}{where}")


class FuzzServer:
    """A syncsim server for one scenario, listening on 127.0.0.1:<ephemeral> in a background thread."""

    def __init__(self, scenario: Scenario, admin_key: str | None = None) -> None:
        self.scenario = scenario
        self.admin_key = admin_key or secrets.token_urlsafe(18)
        self.clock = ManualClock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-server", daemon=True)
        self._server: RunningServer | None = None
        self._tracebacks = _Tracebacks()

    def start(self, timeout_s: float = 120.0) -> FuzzServer:
        logging.getLogger("aiohttp.server").addHandler(self._tracebacks)
        self._thread.start()
        self._server = self._await(start_server(self.scenario, admin_key=self.admin_key, clock=self.clock), timeout_s)
        return self

    def close(self) -> None:
        logging.getLogger("aiohttp.server").removeHandler(self._tracebacks)
        if self._server is not None:
            self._await(self._server.close(), 30.0)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> FuzzServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the server is not started"
        return self._server.base_url

    @property
    def state(self) -> ServerState:
        """The server's state. Read it through `call` while requests may be in flight."""
        assert self._server is not None, "the server is not started"
        return self._server.app[STATE]

    def call(self, fn: Callable[[ServerState], T], timeout_s: float = 30.0) -> T:
        """Run fn(state) on the server's event loop (between two requests' handlers, never inside one)."""
        async def run() -> T:
            return fn(self.state)
        return self._await(run(), timeout_s)

    def take_errors(self) -> list[str]:
        """The server-side exceptions logged since the last call (type, message, where)."""
        lines, self._tracebacks.lines = self._tracebacks.lines, []
        return lines

    def snapshot(self) -> Snapshot:
        return self.call(take_snapshot)

    def advance_clock(self, scenario_seconds: float) -> None:
        self.call(lambda _: self.clock.advance(scenario_seconds))

    def _await(self, coro: Any, timeout_s: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the fuzz server did not answer within {timeout_s:g} s") from None
