"""A device's lived time: work at its length, every wait at its full scenario length.

`Timeline` is one device's own time as its user lives it. Sync durations are measured on it, so a
3 minute Retry-After inside a sync adds 3 minutes to that sync whatever the time_scale; on a virtual
clock, where work and waits already share one time, the timeline is simply that clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from .base import Clock

T = TypeVar("T")


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
