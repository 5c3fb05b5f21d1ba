"""The run's timeline: every second, what the fleet is doing and how the generator and the server
hold up, so that a report can say when sync durations include the generator's own delay.

A sample holds the fleet (devices online, offline, syncing; syncs finished), the server's work over
the last second (rows and bytes served, 429s answered), and both processes' health (event-loop lag,
CPU share of one core, peak memory). `saturation` applies the rule: the device process is
saturated when its loop lag p99 is above 100 ms, or its CPU above 90% for more than 10% of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from simulator.clock import Clock, sleep_wall, wall_s
from simulator.health import CPU_LIMIT, LAG_LIMIT_MS, SATURATED_SHARE, ProcessHealth
from simulator.metrics import TimelineSample


@dataclass(frozen=True, slots=True)
class FleetState:
    online: int
    offline: int
    syncing: int
    syncs_done: int


Fetch = Callable[[], Awaitable[dict[str, Any]]]


class TimelineSampler:
    """Takes a TimelineSample every `interval_s` seconds while `run` runs: wall seconds with the
    generator's health (`generator`, a real-time run), or seconds of the run's clock without it (a
    virtual run: its generator cannot lag the simulated time, and sampling it would not be
    deterministic)."""

    def __init__(self, clock: Clock, origin: float, fleet: Callable[[], FleetState], health: Fetch,
                 counters: Fetch, interval_s: float = 1.0, generator: bool = True) -> None:
        self.clock, self.origin, self.fleet = clock, origin, fleet
        self.server_health, self.server_counters = health, counters
        self.interval_s = interval_s
        self.generator = generator
        self.own = ProcessHealth()
        self.samples: list[TimelineSample] = []
        self.missed = 0  # seconds whose server figures could not be read

    async def _sleep(self) -> None:
        if self.generator:
            await sleep_wall(self.interval_s)
        else:
            await self.clock.sleep(self.interval_s)

    def _elapsed(self) -> float:
        return wall_s() if self.generator else self.clock.monotonic()

    async def run(self) -> None:
        """Sample until cancelled (the runner stops it after the quiet period). A second whose
        server figures cannot be read (the server too busy, the process out of file descriptors)
        is a gap in the timeline (its samples' `t` show it, `missed` counts it), never the end of
        the run."""
        last: tuple[float, int, int, int] | None = None
        own = asyncio.ensure_future(self.own.run()) if self.generator else None
        try:
            while True:
                if last is not None:
                    await self._sleep()
                try:
                    served = await self._served()
                    if last is not None:
                        self.samples.append(await self._sample(last, served))
                except (aiohttp.ClientError, OSError):
                    self.missed += 1
                    last = None  # rates restart from the next reading
                    await self._sleep()
                    continue
                last = served
        finally:
            if own is not None:
                own.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await own

    async def _served(self) -> tuple[float, int, int, int]:
        c = await self.server_counters()
        return self._elapsed(), c.get("rows_served", 0), c.get("bytes_served", 0), sum(c.get("throttles", {}).values())

    async def _sample(self, last: tuple[float, int, int, int], now: tuple[float, int, int, int]) -> TimelineSample:
        elapsed = max(1e-9, now[0] - last[0])
        fleet = self.fleet()
        own = self.own.latest
        server = ((await self.server_health()).get("process") or {}) if self.generator else {}
        return TimelineSample(
            t=self.clock.now() - self.origin, devices_online=fleet.online, devices_offline=fleet.offline,
            devices_syncing=fleet.syncing, syncs_done=fleet.syncs_done,
            rows_per_s=(now[1] - last[1]) / elapsed, bytes_per_s=(now[2] - last[2]) / elapsed,
            throttled=now[3] - last[3],
            gen_loop_lag_ms=own.loop_lag_ms if own else 0.0, gen_cpu=own.cpu if own else 0.0,
            gen_peak_rss_mb=own.peak_rss_mb if own else 0.0,
            server_loop_lag_ms=server.get("loop_lag_ms"), server_cpu=server.get("cpu"),
            server_peak_rss_mb=server.get("peak_rss_mb"))


def saturation(samples: Sequence[TimelineSample], lags_ms: Sequence[float] = ()) -> dict[str, Any]:
    """The generator's health over a run: loop lag and CPU percentiles of both processes, the share of
    seconds the device process was saturated, and whether the run counts as saturated. `lags_ms` are
    the device process's every lag measurement (ten a second); without them the per-second worst."""
    if not samples:
        return {"samples": 0, "saturated": False, "saturated_share": 0.0}
    lag = np.array(lags_ms if len(lags_ms) else [s.gen_loop_lag_ms for s in samples])
    cpu = np.array([s.gen_cpu for s in samples])
    hot = (np.array([s.gen_loop_lag_ms for s in samples]) > LAG_LIMIT_MS) | (cpu > CPU_LIMIT)
    lag_p99 = float(np.percentile(lag, 99))
    cpu_share = float((cpu > CPU_LIMIT).mean())
    server_lag = [s.server_loop_lag_ms for s in samples if s.server_loop_lag_ms is not None]
    server_cpu = [s.server_cpu for s in samples if s.server_cpu is not None]
    return {
        "samples": len(samples),
        "saturated": bool(lag_p99 > LAG_LIMIT_MS or cpu_share > SATURATED_SHARE),
        "saturated_share": round(float(hot.mean()), 4),
        "devices_process": {"loop_lag_ms_p50": round(float(np.percentile(lag, 50)), 1), "loop_lag_ms_p99": round(lag_p99, 1),
                            "cpu_p50": round(float(np.percentile(cpu, 50)), 3), "cpu_max": round(float(cpu.max()), 3),
                            "cpu_over_90pct_share": round(cpu_share, 4),
                            "peak_rss_mb": round(max(s.gen_peak_rss_mb for s in samples), 1)},
        "server_process": {
            "loop_lag_ms_p99": round(float(np.percentile(server_lag, 99)), 1) if server_lag else None,
            "cpu_p50": round(float(np.percentile(server_cpu, 50)), 3) if server_cpu else None,
            "cpu_max": round(max(server_cpu), 3) if server_cpu else None,
            "peak_rss_mb": max((s.server_peak_rss_mb or 0.0) for s in samples) or None},
    }
