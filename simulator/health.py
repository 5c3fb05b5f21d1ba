"""The generator's own health: how late this process's event loop runs, how busy its CPU is, how
much memory it has used. Sampled every second in the device process and in the server process, so a
run can say when its sync durations include the generator's own delay.

A sample is taken by asking the loop to wake after `interval_s`: the lateness is the loop's lag
(every ready task ran first); the CPU share is CPU seconds over wall seconds in the interval (1.0 is
one core fully busy).
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
    """Samples this process every `interval_s` wall seconds while `run` runs; keeps the last `keep`."""

    def __init__(self, interval_s: float = 1.0, keep: int = 86_400) -> None:
        self.interval_s = interval_s
        self.samples: deque[ProcessSample] = deque(maxlen=keep)

    @property
    def latest(self) -> ProcessSample | None:
        return self.samples[-1] if self.samples else None

    async def run(self) -> None:
        while True:
            t0, c0 = wall_s(), cpu_s()
            await sleep_wall(self.interval_s)
            elapsed = wall_s() - t0
            self.samples.append(ProcessSample(wall_s(), max(0.0, elapsed - self.interval_s) * 1000,
                                              (cpu_s() - c0) / elapsed if elapsed > 0 else 0.0, peak_rss_mb()))
