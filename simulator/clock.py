"""The injected clock: the only place that reads the time or sleeps for simulated time.

Scenario time runs `time_scale` times faster than real time, so a 15 minute sync interval passes
in 15 s at time_scale=60. Idle waits (sync intervals, offline windows, think time, Retry-After,
backoff) are given in scenario seconds and compressed; transfer waits (latency, bandwidth) are
given in real seconds and are not. A virtual-time clock can replace this one by implementing the
same four methods.

`Timeline` is one device's own time as its user lives it: work and transfers at their real length,
every wait at its full scenario length. Sync durations are measured on it, so a 3 minute
Retry-After inside a sync adds 3 minutes to that sync whatever the time_scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

T = TypeVar("T")


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

    def timeout(self, scenario_seconds: float) -> AbstractAsyncContextManager[object]:
        """A context that cancels its body after `scenario_seconds` of scenario time (TimeoutError)."""
        ...


class RealClock:
    """Scenario time = start + time_scale * real time elapsed since construction."""

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
        """How many real seconds a span of scenario time takes."""
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

    def rebase(self, time_scale: float, scenario_now: float) -> None:
        """Run at `time_scale` from `scenario_now` (as RealClock.rebase)."""
        self.time_scale, self._now = time_scale, scenario_now

    def timeout(self, scenario_seconds: float) -> AbstractAsyncContextManager[object]:
        """Never fires: time on this clock moves only when something sleeps, so a deadline here
        could only cut work that is otherwise finished. Tests bound their own runs."""
        return contextlib.nullcontext()


class Timeline:
    """One device's lived time: real seconds of work plus every wait at its full scenario length.

    `now()` is in seconds from an arbitrary origin and only moves forward. Waits go through `sleep`
    (a scenario-seconds wait) or `wait` (any awaitable, e.g. "until the network is back"); each is
    measured on the clock in both scenario and real time, and the timeline counts its scenario
    length instead of its real one. `waited` sums the lived seconds of waits per kind
    (retry_after, backoff, offline, idle). Only the device's own task may wait through it.
    `on_sleep`, if set, is told the length of each `sleep` as it starts (the device's Link: it ends
    the connections the wait will outlive at once, so an idle device holds no socket meanwhile).
    """

    __slots__ = ("clock", "_credit", "waited", "on_sleep")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._credit = 0.0  # scenario seconds waited minus the real seconds those waits took
        self.waited: dict[str, float] = {}
        self.on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        return self.clock.monotonic() + self._credit

    async def sleep(self, scenario_seconds: float, kind: str) -> None:
        """Wait `scenario_seconds` of scenario time, counted at exactly that length as `kind`
        (a late wake-up is the generator's delay, not the device's)."""
        if self.on_sleep is not None:
            self.on_sleep(max(0.0, scenario_seconds))
        await self._wait(self.clock.sleep(scenario_seconds), kind, max(0.0, scenario_seconds))

    async def wait(self, work: Awaitable[T], kind: str) -> T:
        """Await `work` (e.g. until the network is back), counting the scenario time it took as `kind`."""
        return await self._wait(work, kind, None)

    async def _wait(self, work: Awaitable[T], kind: str, length: float | None) -> T:
        now0, real0 = self.clock.now(), self.clock.monotonic()
        try:
            result = await work
        except BaseException:  # cut short (cancelled): count what passed
            self._count(kind, max(0.0, self.clock.now() - now0), real0)
            raise
        self._count(kind, max(0.0, self.clock.now() - now0) if length is None else length, real0)
        return result

    def _count(self, kind: str, lived: float, real0: float) -> None:
        self._credit += lived - (self.clock.monotonic() - real0)
        self.waited[kind] = self.waited.get(kind, 0.0) + lived

    def waits_since(self, before: dict[str, float]) -> dict[str, float]:
        """Lived seconds waited per kind since `before` (an earlier copy of `waited`); zeros left out."""
        out = {k: v - before.get(k, 0.0) for k, v in self.waited.items()}
        return {k: v for k, v in out.items() if v > 0}


# --- the generator's own time: real seconds and CPU of this process, whatever the Clock ---------
def wall_s() -> float:
    """Real seconds from an arbitrary origin (monotonic): for measuring the generator itself."""
    return time.monotonic()


def cpu_s() -> float:
    """CPU seconds this process has used (all threads)."""
    return time.process_time()


async def sleep_wall(seconds: float) -> None:
    """Wait real seconds: for the generator's own sampling and display, never for simulated time."""
    await asyncio.sleep(seconds)
