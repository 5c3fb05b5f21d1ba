"""A clock for tests: time moves only when something sleeps on it or `advance` is called."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager

from .base import ClockKind


class ManualClock:
    """Time moves only when `advance` is called or a sleeper is woken.

    `sleep` and `sleep_real` both advance scenario time by the requested amount immediately
    (after yielding once to the event loop), so tests read exact times instead of tolerances.
    """

    kind: ClockKind = "manual"

    def __init__(self, start: float = 1_700_000_000.0, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, scenario_seconds: float) -> None:
        self._now += scenario_seconds
        self._mono += scenario_seconds / self.time_scale

    async def sleep(self, scenario_seconds: float) -> None:
        self.advance(max(0.0, scenario_seconds))
        await asyncio.sleep(0)

    async def sleep_real(self, seconds: float) -> None:
        self._now += max(0.0, seconds) * self.time_scale
        self._mono += max(0.0, seconds)
        await asyncio.sleep(0)

    def to_real(self, scenario_seconds: float) -> float:
        return scenario_seconds / self.time_scale

    def rebase(self, time_scale: float, scenario_now: float) -> None:
        """Run at `time_scale` from `scenario_now` (as RealClock.rebase)."""
        self.time_scale, self._now = time_scale, scenario_now

    def timeout(self, scenario_seconds: float) -> AbstractAsyncContextManager[object]:
        """Never fires: time on this clock moves only when something sleeps, so a deadline here
        could only cut work that is otherwise finished. Tests bound their own runs."""
        return contextlib.nullcontext()
