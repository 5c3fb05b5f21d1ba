"""Real time: scenario time runs `time_scale` times faster than the wall clock; work takes its real
length. Also the generator's own time (`wall_s`, `cpu_s`, `sleep_wall`), whatever the run's clock:
for its health and progress only, never for simulated time."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager

from .base import ClockKind


class RealClock:
    """Scenario time = start + time_scale * real time elapsed since construction."""

    kind: ClockKind = "real"

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._origin_real = time.monotonic()
        self._origin_scenario = time.time() if start is None else start

    @classmethod
    def joining(cls, time_scale: float, scenario_now: float, at_wall: float) -> RealClock:
        """A clock on another process's timeline: it read `scenario_now` at wall time `at_wall`
        (time.time(), which processes of one machine share). Used by Locust workers."""
        return cls(time_scale, start=scenario_now + (time.time() - at_wall) * time_scale)

    def now(self) -> float:
        return self._origin_scenario + (time.monotonic() - self._origin_real) * self.time_scale

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, scenario_seconds: float) -> None:
        await asyncio.sleep(max(0.0, scenario_seconds) / self.time_scale)

    async def sleep_real(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def to_real(self, scenario_seconds: float) -> float:
        return scenario_seconds / self.time_scale

    def timeout(self, scenario_seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(max(0.0, scenario_seconds) / self.time_scale)

    def rebase(self, time_scale: float, scenario_now: float) -> None:
        """From now on run at `time_scale`, reading `scenario_now` at this moment: how a server in
        another process joins a run's timeline (PUT /_syncsim/clock)."""
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._origin_real = time.monotonic()
        self._origin_scenario = scenario_now


# --- the generator's own time: real seconds and CPU of this process, whatever the Clock ---------
def wall_s() -> float:
    """Real seconds from an arbitrary origin (monotonic): for measuring the generator itself."""
    return time.monotonic()


def wall_epoch_s() -> float:
    """Real seconds since the Unix epoch: for a real-time run's origin and report stamps."""
    return time.time()


def cpu_s() -> float:
    """CPU seconds this process has used (all threads)."""
    return time.process_time()


async def sleep_wall(seconds: float) -> None:
    """Wait real seconds: for the generator's own sampling and display, never for simulated time.
    (On a virtual-time loop this would be simulated time: virtual runs do not sample the generator.)"""
    await asyncio.sleep(seconds)
