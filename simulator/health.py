"""The generator's own health: how late this process's event loop runs, how busy its CPU is, how
much memory it has used, in the device process and in the server process, so a run can say when its
sync durations include the generator's own delay.

A measurement asks the loop to wake after `interval_s` (a tenth of a second): the lateness is the
loop's lag (every ready task ran first); the CPU share is CPU seconds over wall seconds in the
interval (1.0 is one core fully busy). `last_second()` folds the last second's measurements into one
sample (its worst lag, its mean CPU), which is what the run's timeline records every second; the
run's lag percentiles use every measurement, so one hiccup is not mistaken for a saturated run.
"""

from __future__ import annotations

import resource
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from simulator.clock import cpu_s, sleep_wall, wall_s

LAG_LIMIT_MS = 100.0  # a device process whose loop lag p99 is above this is saturated
CPU_LIMIT = 0.90  # ... or whose CPU is above this share of a core for more than SATURATED_SHARE of the run
SATURATED_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One second of a process: loop lag (ms), CPU share of one core (0..1+), peak RSS (MiB)."""

    at: float  # wall seconds (clock.wall_s)
    loop_lag_ms: float
    cpu: float
    peak_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ProcessHealth:
    """Measures this process every `interval_s` wall seconds while `run` runs; keeps the last `keep`."""

    def __init__(self, interval_s: float = 0.1, keep: int = 36_000) -> None:
        self.interval_s = interval_s
        self.samples: deque[ProcessSample] = deque(maxlen=keep)

    @property
    def latest(self) -> ProcessSample | None:
        """The last second, folded into one sample (worst lag, mean CPU); None before any."""
        return self.last_second()

    def last_second(self) -> ProcessSample | None:
        if not self.samples:
            return None
        end = self.samples[-1].at
        recent = [s for s in reversed(self.samples) if s.at > end - 1.0]
        return ProcessSample(end, max(s.loop_lag_ms for s in recent), sum(s.cpu for s in recent) / len(recent),
                             recent[0].peak_rss_mb)

    def lags_ms(self) -> list[float]:
        return [s.loop_lag_ms for s in self.samples]

    async def run(self) -> None:
        while True:
            t0, c0 = wall_s(), cpu_s()
            await sleep_wall(self.interval_s)
            elapsed = wall_s() - t0
            self.samples.append(ProcessSample(wall_s(), max(0.0, elapsed - self.interval_s) * 1000,
                                              (cpu_s() - c0) / elapsed if elapsed > 0 else 0.0, peak_rss_mb()))
