"""The virtual-time event loop and its clock: time moves only when every task waits, and only to
the next timer; the order of events depends on the program alone."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from simulator.clock import VIRTUAL_START, VirtualClock, VirtualEventLoop, VirtualTimeStalled, run_virtual


def test_a_fifteen_minute_wait_takes_no_wall_time_and_ends_exactly_on_time() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(900)
        return t0, loop.time()

    wall = time.perf_counter()
    t0, t1 = run_virtual(main())
    assert (t0, t1) == (0.0, 900.0)
    assert time.perf_counter() - wall < 1.0


def test_timers_run_in_time_order_and_timers_due_together_in_the_order_they_were_set() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def at(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append((name, loop.time()))

        await asyncio.gather(at("c", 3.0), at("a", 1.0), at("b1", 2.0), at("b2", 2.0), at("zero", 0.0))
        return seen

    assert run_virtual(main()) == [("zero", 0.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)]


def test_a_timeout_fires_at_its_deadline_in_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.sleep(3600)
        return loop.time()

    assert run_virtual(main()) == 60.0


def test_a_loop_where_every_task_waits_for_nothing_raises_instead_of_hanging() -> None:
    async def main() -> None:
        await asyncio.Event().wait()  # nobody will ever set it

    with pytest.raises(VirtualTimeStalled, match="nothing can ever happen again"):
        run_virtual(main())


def test_work_in_a_thread_is_awaited_before_time_moves_on() -> None:
    async def main() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        release = threading.Event()

        def slow() -> str:
            release.wait(5)
            return "thread"

        async def timer() -> None:
            await asyncio.sleep(0.001)
            order.append("timer")

        job = loop.run_in_executor(None, slow)
        ticking = asyncio.ensure_future(timer())
        await asyncio.sleep(0)
        loop.call_soon(release.set)
        order.append(await job)
        at = loop.time()
        await ticking
        return at, order

    at, order = run_virtual(main())
    assert at == 0.0 and order == ["thread", "timer"]  # the timer due 1 ms later waited for the thread


def test_the_virtual_clock_reads_scenario_time_from_a_fixed_start_and_converts_nothing() -> None:
    async def main() -> tuple[float, float, float, float]:
        clock = VirtualClock()
        await clock.sleep(90)
        await clock.sleep_real(10)
        return clock.now(), clock.monotonic(), clock.to_real(60), clock.time_scale

    now, mono, real, scale = run_virtual(main())
    assert now == VIRTUAL_START + 100 and mono == 100.0 and real == 60 and scale == 1.0


def test_a_virtual_clock_refuses_an_ordinary_event_loop() -> None:
    async def main() -> None:
        VirtualClock()

    with pytest.raises(TypeError, match="VirtualEventLoop"):
        asyncio.run(main())


def test_two_runs_of_the_same_program_interleave_the_same_way() -> None:
    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[int, float]] = []

        async def worker(n: int) -> None:
            for step in range(50):
                await asyncio.sleep(((n * 7 + step * 13) % 11) / 10)
                seen.append((n, loop.time()))

        await asyncio.gather(*(worker(n) for n in range(20)))
        return seen

    assert run_virtual(main()) == run_virtual(main())
    assert isinstance(VirtualEventLoop().time(), float)


def test_a_read_deadline_cuts_exactly_its_seconds_after_the_last_progress_and_never_before() -> None:
    """Progress every second for 100 s, then silence: the block is cut at 100 + 30 s, not at 30 s
    (the first deadline) and not later; a block that keeps progressing is never cut."""
    from simulator.clock import ReadDeadline

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with ReadDeadline(30) as deadline:
                for _ in range(100):
                    await asyncio.sleep(1)
                    deadline.progress()
                await asyncio.sleep(3600)
        cut_at = loop.time()
        async with ReadDeadline(30) as deadline:
            for _ in range(500):
                await asyncio.sleep(29.9)
                deadline.progress()
        return cut_at, loop.time() - cut_at

    assert run_virtual(main()) == (130.0, pytest.approx(500 * 29.9))
