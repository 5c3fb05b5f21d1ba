"""The injected clock: the only place that reads the time or sleeps for simulated time.

Scenario time runs `time_scale` times faster than real time, so a 15 minute sync interval passes
in 15 s at time_scale=60. Idle waits (sync intervals, offline windows, think time) are given in
scenario seconds and compressed; transfer waits (latency, bandwidth) are given in real seconds and
are not, so measured sync durations stay true. A virtual-time clock can replace this one by
implementing the same four methods.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What devices, the network model and the server read time from."""

    time_scale: float

    def now(self) -> float:
        """Scenario time: seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Real seconds from an arbitrary origin, for measuring durations."""
        ...

    async def sleep(self, scenario_seconds: float) -> None:
        """Wait idle time given in scenario seconds (compressed by time_scale)."""
        ...

    async def sleep_real(self, seconds: float) -> None:
        """Wait transfer time given in real seconds (never compressed)."""
        ...


class RealClock:
    """Scenario time = start + time_scale * real time elapsed since construction."""

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._origin_real = time.monotonic()
        self._origin_scenario = time.time() if start is None else start

    def now(self) -> float:
        return self._origin_scenario + (time.monotonic() - self._origin_real) * self.time_scale

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, scenario_seconds: float) -> None:
        await asyncio.sleep(max(0.0, scenario_seconds) / self.time_scale)

    async def sleep_real(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def to_real(self, scenario_seconds: float) -> float:
        """How many real seconds a span of scenario time takes."""
        return scenario_seconds / self.time_scale


class ManualClock:
    """A clock for tests: time moves only when `advance` is called or a sleeper is woken.

    `sleep` and `sleep_real` both advance scenario time by the requested amount immediately
    (after yielding once to the event loop), so tests read exact times instead of tolerances.
    """

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
