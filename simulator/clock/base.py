"""The Clock protocol: what devices, the network model and the server read time from.

Two kinds of time meet in a run. *Scenario time* is the world's: sync intervals, offline windows,
Retry-After, token retention, rollout waves. *Work time* is what a transfer or the device's own
processing takes (`sleep_real`). A real-time clock runs scenario time `time_scale` times faster than
the wall clock while work takes its real length; a virtual clock runs both on one simulated time, so
a 66 s transfer is 66 s for everyone. Every conversion between the two goes through the clock
(`to_real`), never through `time_scale` in the caller.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

ClockKind = Literal["real", "virtual", "manual"]


class Clock(Protocol):
    """What devices, the network model and the server read time from."""

    kind: ClockKind
    time_scale: float

    def now(self) -> float:
        """Scenario time: seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Work time: seconds from an arbitrary origin, for measuring durations (real seconds on a
        real-time clock, simulated seconds on a virtual one)."""
        ...

    async def sleep(self, scenario_seconds: float) -> None:
        """Wait idle time given in scenario seconds."""
        ...

    async def sleep_real(self, seconds: float) -> None:
        """Wait work time (a transfer, the device's own processing): never compressed."""
        ...

    def to_real(self, scenario_seconds: float) -> float:
        """How many seconds of work time a span of scenario time takes (scenario / time_scale on a
        real-time clock; the same span on a virtual one)."""
        ...

    def timeout(self, scenario_seconds: float) -> AbstractAsyncContextManager[object]:
        """A context that cancels its body after `scenario_seconds` of scenario time (TimeoutError)."""
        ...
