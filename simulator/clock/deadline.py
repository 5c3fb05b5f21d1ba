"""A read deadline: a block cancelled after some seconds of work time with no progress, as a phone's
HTTP client's read timeout (the device's Link). It runs on the event loop's time, which is the work
time of every clock: real seconds on a real-time loop, simulated seconds on a VirtualEventLoop."""

from __future__ import annotations

import asyncio
from types import TracebackType


class ReadDeadline:
    """`async with ReadDeadline(60) as d:` raises TimeoutError once 60 s pass with no `d.progress()`."""

    __slots__ = ("seconds", "_timeout", "_loop")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timeout = asyncio.timeout(seconds)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> ReadDeadline:
        self._loop = asyncio.get_running_loop()
        await self._timeout.__aenter__()
        return self

    def progress(self) -> None:
        """Something arrived: the deadline starts again."""
        assert self._loop is not None
        self._timeout.reschedule(self._loop.time() + self.seconds)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._timeout.__aexit__(kind, exc, tb)  # raises TimeoutError when it cut the block
