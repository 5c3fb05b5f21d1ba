"""A read deadline: a block cancelled after some seconds of work time with no progress, as a phone's
HTTP client's read timeout (the device's Link). It runs on the event loop's time, which is the work
time of every clock: real seconds on a real-time loop, simulated seconds on a VirtualEventLoop.

Progress comes with every chunk of a response, so it must be cheap: `progress()` only notes the
time. One timer stands for the deadline; when it fires early (progress came since it was set) it is
set again for the new deadline, so a transfer of n chunks re-arms it about once per `seconds` of
transfer, not n times. The block is cut exactly `seconds` after the last progress either way."""

from __future__ import annotations

import asyncio
from types import TracebackType


class ReadDeadline:
    """`async with ReadDeadline(60) as d:` raises TimeoutError once 60 s pass with no `d.progress()`."""

    __slots__ = ("seconds", "_timeout", "_loop", "_last", "_timer")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timeout = asyncio.timeout(None)  # cuts the block when told to; no timer of its own
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> ReadDeadline:
        loop = self._loop = asyncio.get_running_loop()
        await self._timeout.__aenter__()
        self._last = loop.time()
        self._timer = loop.call_at(self._last + self.seconds, self._due)
        return self

    def progress(self) -> None:
        """Something arrived: the deadline starts again."""
        assert self._loop is not None
        self._last = self._loop.time()

    def _due(self) -> None:
        assert self._loop is not None
        deadline = self._last + self.seconds
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._due)  # progress since: wait for the new deadline
        else:
            self._timer = None
            self._timeout.reschedule(self._loop.time())  # cut the block now

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._timeout.__aexit__(kind, exc, tb)  # raises TimeoutError when it cut the block
