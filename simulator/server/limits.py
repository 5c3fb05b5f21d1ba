"""Service protection: per user, a sliding window of requests and execution time, plus concurrency.

The window is counted in scenario seconds using buckets (window / 30 each), so memory per user is
constant. Retry-After is the scenario time until enough of the window has slid out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simulator.protocol import ErrorCode
from simulator.scenario import Limits

BUCKETS = 30


@dataclass(slots=True)
class _Window:
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    exec_s: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    bucket_at: list[int] = field(default_factory=lambda: [-1] * BUCKETS)  # bucket number held
    concurrent: int = 0


@dataclass(frozen=True, slots=True)
class Throttle:
    """A refusal: which limit, its Dataverse code, the message, and Retry-After in seconds."""

    code: ErrorCode
    message: str
    retry_after_s: int


class ServiceProtection:
    """Tracks every user's usage; `admit` before a request, `release` after it."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.bucket_s = limits.window_s / BUCKETS
        self._users: dict[int, _Window] = {}

    def _window(self, user: int) -> _Window:
        w = self._users.get(user)
        if w is None:
            w = self._users[user] = _Window()
        return w

    def _totals(self, w: _Window, now: float) -> tuple[int, float, int]:
        """Requests and execution seconds in the window, and the oldest live bucket number."""
        current = int(now // self.bucket_s)
        requests, exec_s, oldest = 0, 0.0, current
        for i in range(BUCKETS):
            b = w.bucket_at[i]
            if current - BUCKETS < b <= current:
                requests += w.counts[i]
                exec_s += w.exec_s[i]
                oldest = min(oldest, b)
        return requests, exec_s, oldest

    def admit(self, user: int, now: float) -> Throttle | None:
        """Count a request starting now, or say why it is refused (nothing counted then)."""
        w = self._window(user)
        lim = self.limits
        if w.concurrent >= lim.concurrent:
            return Throttle(
                ErrorCode.THROTTLE_CONCURRENCY,
                f"Number of concurrent requests exceeded the limit of {lim.concurrent}.",
                1,
            )
        requests, exec_s, oldest = self._totals(w, now)
        retry = max(1, math.ceil((oldest + BUCKETS) * self.bucket_s - now))
        if requests >= lim.requests:
            return Throttle(
                ErrorCode.THROTTLE_REQUESTS,
                f"Number of requests exceeded the limit of {lim.requests} over time window of {lim.window_s:g} seconds.",
                retry,
            )
        if exec_s >= lim.execution_time_s:
            return Throttle(
                ErrorCode.THROTTLE_EXECUTION_TIME,
                f"Combined execution time of incoming requests exceeded limit of {lim.execution_time_s * 1000:,.0f} "
                f"milliseconds over time window of {lim.window_s:g} seconds.",
                retry,
            )
        slot = self._slot(w, now)
        w.counts[slot] += 1
        w.concurrent += 1
        return None

    def release(self, user: int, now: float, exec_s: float) -> None:
        """A request admitted earlier finished after `exec_s` seconds of server time."""
        w = self._window(user)
        w.concurrent = max(0, w.concurrent - 1)
        w.exec_s[self._slot(w, now)] += exec_s

    def _slot(self, w: _Window, now: float) -> int:
        b = int(now // self.bucket_s)
        i = b % BUCKETS
        if w.bucket_at[i] != b:
            w.bucket_at[i], w.counts[i], w.exec_s[i] = b, 0, 0.0
        return i
