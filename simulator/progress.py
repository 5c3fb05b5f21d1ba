"""Live progress for long runs: scenario time, devices through first sync, syncs done, errors.

Reads only the recorded metrics. On a terminal it redraws one line; elsewhere (CI, pipes) it
prints a line every `every_s` real seconds. In virtual time it has no real seconds to count: it
prints at steps of the scenario's time instead (a twentieth of its duration; a two-hundredth on a
terminal), so the lines are the same however fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from rich.console import Console

from simulator.clock import Clock, sleep_wall
from simulator.metrics import Metrics


class Progress:
    def __init__(self, metrics: Metrics, devices: int, clock: Clock, origin: float, duration_s: float,
                 enabled: bool = True, console: Console | None = None, every_s: float = 5.0) -> None:
        self.metrics, self.devices, self.clock = metrics, devices, clock
        self.origin, self.duration_s = origin, duration_s
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.every_s = every_s if not self.console.is_terminal else 0.5
        self._task: asyncio.Task[None] | None = None
        self._phase = "running"
        self._seen = 0
        self._first: set[str] = set()
        self._failed = 0

    def line(self) -> str:
        records = self.metrics.records
        for r in records[self._seen :]:
            if r.result == "success" and r.mode == "FIRST_SYNC":
                self._first.add(r.device)
            self._failed += r.result == "failed" and not r.final  # as the table counts them
        self._seen = len(records)
        t = min(self.clock.now() - self.origin, self.duration_s)
        return (f"[{self._phase}] t={t:,.0f}/{self.duration_s:,.0f}s  first sync done {len(self._first)}/{self.devices}"
                f"  syncs {len(records):,}  failed {self._failed:,}")

    def phase(self, name: str) -> None:
        self._phase = name
        if self.enabled:
            self.console.print(self.line(), markup=False)

    async def _tick(self) -> None:
        if self.clock.kind == "virtual":
            await self.clock.sleep(self.duration_s / (200 if self.console.is_terminal else 20))
        else:
            await sleep_wall(self.every_s)  # real-time display refresh, not simulated time

    async def _loop(self) -> None:
        while True:
            await self._tick()
            if self.console.is_terminal:
                self.console.print(self.line(), end="\r", markup=False)
            else:
                self.console.print(self.line(), markup=False)

    async def __aenter__(self) -> Progress:
        if self.enabled:
            self._task = asyncio.create_task(self._loop())
        return self

    async def stop(self) -> None:
        """The last line, once: before the run's reports are printed (the end of the run's work)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.enabled:
            self.console.print(self.line(), markup=False)
            self.enabled = False

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
