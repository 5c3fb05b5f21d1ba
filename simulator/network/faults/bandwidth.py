"""Bandwidth: a rate limit on a transfer, and the pacing arithmetic used while streaming."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import register


@register("bandwidth")
@dataclass(frozen=True, slots=True)
class Bandwidth:
    """kbps: rate in kilobits per second (1 kbps = 1000 bits/s), > 0."""

    kbps: float

    def __post_init__(self) -> None:
        if self.kbps <= 0:
            raise ValueError(f"bandwidth kbps must be > 0, got {self.kbps}")

    def seconds_for(self, nbytes: float) -> float:
        """Seconds that `nbytes` bytes take at this rate: nbytes * 8 / (kbps * 1000)."""
        return nbytes * 8 / (self.kbps * 1000)


class Throttle:
    """Paces one stream: after n bytes the stream may not be ahead of start_s + due(n).

    `due(n)` is the seconds n bytes take from the stream's start: by default n * 8 / (kbps * 1000)
    at `bandwidth`; the link gives the connection model's schedule instead (wire bytes, headers ahead
    of the body, slow start: `Connection.leg_s`). The caller adds each chunk's size, then sleeps
    `wait_s(now)` real seconds. Because the schedule is absolute (measured from start_s),
    oversleeping on one chunk is made up on the next, so B bytes take due(B) in total however they
    are chunked. No due and bandwidth=None means unlimited (never waits).
    """

    __slots__ = ("bandwidth", "start_s", "sent_bytes", "_due")

    def __init__(self, bandwidth: Bandwidth | None, start_s: float,
                 due: Callable[[int], float] | None = None) -> None:
        self.bandwidth = bandwidth
        self.start_s = start_s
        self.sent_bytes = 0
        self._due = due if due is not None else None if bandwidth is None else bandwidth.seconds_for

    def add(self, nbytes: int) -> None:
        """Count `nbytes` more bytes as transferred."""
        self.sent_bytes += nbytes

    def wait_s(self, now_s: float) -> float:
        """Real seconds to wait, from monotonic time `now_s`, before the counted bytes are through."""
        if self._due is None:
            return 0.0
        return max(0.0, self.start_s + self._due(self.sent_bytes) - now_s)
