"""The generator's own health: a run says when its sync durations include the generator's own delay."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest
from rich.console import Console

from simulator.health import ProcessHealth
from simulator.metrics import TimelineSample
from simulator.runner import run_scenario
from simulator.scenario import load_scenario
from simulator.timeline import saturation

ROOT = Path(__file__).resolve().parent.parent


def _busy(seconds: float) -> None:
    """Spin the CPU for `seconds`, holding the event loop."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _sample(lag_ms: float, cpu: float) -> TimelineSample:
    return TimelineSample(0.0, 1, 0, 0, 0, 0.0, 0.0, 0, lag_ms, cpu, 50.0, 1.0, 0.1, 60.0)


def test_a_healthy_generator_is_not_saturated() -> None:
    health = saturation([_sample(2, 0.3)] * 100)
    assert not health["saturated"] and health["saturated_share"] == 0.0


def test_loop_lag_p99_above_100_ms_marks_the_run_saturated() -> None:
    health = saturation([_sample(2, 0.3)] * 95 + [_sample(400, 0.3)] * 5)
    assert health["saturated"] and health["saturated_share"] == 0.05
    assert health["devices_process"]["loop_lag_ms_p99"] > 100


def test_cpu_above_90_percent_for_more_than_a_tenth_of_the_run_marks_it_saturated() -> None:
    assert saturation([_sample(2, 0.95)] * 11 + [_sample(2, 0.3)] * 89)["saturated"]
    assert not saturation([_sample(2, 0.95)] * 9 + [_sample(2, 0.3)] * 91)["saturated"]


async def test_process_health_sees_a_blocked_event_loop() -> None:
    health = ProcessHealth(interval_s=0.05)
    sampler = asyncio.ensure_future(health.run())
    await asyncio.sleep(0.01)
    _busy(0.3)  # the loop is blocked by work: the sampler wakes late
    await asyncio.sleep(0.12)
    sampler.cancel()
    assert max(s.loop_lag_ms for s in health.samples) >= 200
    assert max(s.cpu for s in health.samples) > 0.5


@pytest.mark.parametrize("hog_s", [0.4])
def test_a_run_whose_device_process_is_starved_is_marked_saturated_with_a_warning(tmp_path: Path, hog_s: float) -> None:
    async def starved() -> dict[str, object]:
        async def hog() -> None:
            while True:  # a CPU hog in the device process: the loop is blocked most of the time
                _busy(hog_s)
                await asyncio.sleep(0.05)

        hogging = asyncio.ensure_future(hog())
        console = Console(record=True, width=200, stderr=True)
        try:
            result = await run_scenario(load_scenario(ROOT / "scenarios" / "smoke.yaml"), tmp_path, progress=False, server="process",
                                        console=console)
        finally:
            hogging.cancel()
        assert "the generator was saturated" in console.export_text()
        return result.summary

    summary = asyncio.run(starved())
    assert summary["generator_saturated"] is True
    assert summary["generator"]["devices_process"]["loop_lag_ms_p99"] > 100  # type: ignore[index]
    assert (next(tmp_path.iterdir()) / "timeline.csv").stat().st_size > 0


async def test_the_timeline_counts_rows_served_per_second_and_the_fleet_state() -> None:
    from simulator.clock import ManualClock
    from simulator.timeline import FleetState, TimelineSampler

    served = {"rows_served": 0, "bytes_served": 0, "throttles": {}}

    async def counters() -> dict[str, object]:
        served["rows_served"] += 100  # 100 rows between two readings 0.05 s apart: 2,000 rows/s
        served["throttles"] = {"x": 1}
        return dict(served)

    async def health() -> dict[str, object]:
        return {"process": {"loop_lag_ms": 1.0, "cpu": 0.2, "peak_rss_mb": 9.0}}

    sampler = TimelineSampler(ManualClock(), ManualClock().now(), lambda: FleetState(3, 1, 2, 7), health, counters,
                              interval_s=0.05)
    task = asyncio.ensure_future(sampler.run())
    while len(sampler.samples) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    s = sampler.samples[-1]
    assert (s.devices_online, s.devices_offline, s.devices_syncing, s.syncs_done) == (3, 1, 2, 7)
    assert 1_000 < s.rows_per_s < 2_100 and s.throttled == 0 and s.server_cpu == 0.2


def test_the_benchmark_reads_requests_and_rows_per_real_second_of_the_run() -> None:
    from simulator.nightly.metrics import extract

    summary = {"classes": {}, "wall_s": 50.0, "ledger": {"invariants": {"a": {"violations": 2}}},
               "server": {"requests": 1_000, "rows_served": 25_000, "throttles": {"x": 10}}}
    metrics = extract(summary)
    assert (metrics["server_requests_per_s"], metrics["server_rows_per_s"]) == (20.0, 500.0)
    assert (metrics["throttled_429s"], metrics["throttle_rate"], metrics["ledger_violations"]) == (10, 0.01, 2)


async def test_a_second_whose_server_figures_cannot_be_read_is_a_gap_not_the_end_of_the_run() -> None:
    """A 20,000-device run lost every result when the sampler's last reading failed (out of file
    descriptors): a failed reading is counted and skipped, and sampling goes on."""
    from simulator.clock import ManualClock
    from simulator.timeline import FleetState, TimelineSampler

    calls = {"n": 0}

    async def counters() -> dict[str, object]:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise aiohttp.ClientConnectionError("Cannot connect to host [Too many open files]")
        return {"rows_served": 10 * calls["n"], "bytes_served": 0, "throttles": {}}

    async def health() -> dict[str, object]:
        return {"process": {"loop_lag_ms": 1.0, "cpu": 0.2, "peak_rss_mb": 9.0}}

    sampler = TimelineSampler(ManualClock(), ManualClock().now(), lambda: FleetState(1, 0, 0, 0), health, counters,
                              interval_s=0.01)
    task = asyncio.ensure_future(sampler.run())
    async with asyncio.timeout(10):  # the old sampler ended at the failure: no second sample ever
        while len(sampler.samples) < 2 and not task.done():
            await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sampler.missed == 2 and len(sampler.samples) >= 2
