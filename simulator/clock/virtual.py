"""Virtual time: a run on one event loop whose time is simulated and moves only when every task waits.

`VirtualEventLoop` is asyncio's own selector loop with two changes, as SimPy's Environment keeps
time (pop the next event, set `now` to its time, run it): `time()` reads a number the loop keeps
instead of the machine's clock, and when nothing is ready the loop does not sleep until its next
timer but sets its time to that timer's and runs it. So `asyncio.sleep`, `asyncio.timeout`,
`loop.call_later` and everything built on them (aiohttp's keep-alive and timeouts included) run on
simulated time, a 15-minute wait costs nothing, and the order of events depends only on what the
tasks do: the same program and seed give the same run on any machine, loaded or not.

Real I/O still works (the loop polls it without waiting), and work handed to a thread
(`run_in_executor`) is waited for in real time before simulated time moves on. A loop with nothing
ready, no timer and no thread at work can never wake up again: it raises `VirtualTimeStalled`.

`VirtualClock` is the Clock on such a loop: scenario time and work time are the same simulated
seconds (time_scale means nothing here), starting at `VIRTUAL_START` unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from asyncio.base_events import MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, TypeVarTuple

from .base import ClockKind

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

VIRTUAL_START = 1_767_600_000.0
"""Where a virtual run's scenario time starts: Monday 2026-01-05 08:00:00 UTC (a fixed date, so seed
data dated relative to the start is the same whenever the run happens)."""

CLOCK_RESOLUTION_S = 1e-9
"""Timers due within this of the loop's time run together. asyncio takes the machine's clock
resolution; a virtual loop fixes it, so the grouping is the same on every machine."""


SIGNAL_POLL_S = 0.1  # wall seconds between looks at the self-pipe while signal handlers are set


class VirtualTimeStalled(RuntimeError):
    """Every task waits, no timer is set and no thread is at work: nothing can ever happen again."""


class _Selector:
    """The loop's selector: polls real I/O without waiting, and asks the loop how long it may wait.

    With nothing registered but the loop's own self-pipe (a virtual run opens no socket), polling is
    skipped: what other threads hand the loop is already in its ready queue, and the pipe only wakes
    a loop that blocks, which this one does only while a thread is at work. Signals are the exception:
    a handler of `add_signal_handler` runs only once the loop reads the pipe, so while the loop has
    one, the pipe is polled at most every SIGNAL_POLL_S of wall time (a Ctrl-C is seen within it)."""

    def __init__(self) -> None:
        self.inner = selectors.DefaultSelector()
        self.wait: Callable[[float | None], float | None] = lambda timeout: timeout
        self.has_signals: Callable[[], bool] = lambda: False
        self._polled = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        polls = len(self.inner.get_map()) > 1 or (self.has_signals() and self._signal_poll_due())
        events = self.inner.select(0) if polls else []
        if events or timeout == 0:
            return events
        real = self.wait(timeout)
        return [] if real == 0 else self.inner.select(real)

    def _signal_poll_due(self) -> bool:
        now = time.monotonic()  # wall time: when to look for a signal, never what the run computes
        if now - self._polled < SIGNAL_POLL_S:
            return False
        self._polled = now
        return True

    def __getattr__(self, name: str) -> Any:  # register, unregister, modify, get_key, get_map, close
        return getattr(self.inner, name)


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop on simulated time: `time()` starts at 0 and jumps to the next timer
    whenever no callback is ready (see the module's docstring)."""

    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)  # type: ignore[arg-type]
        selector.wait = self._wait
        selector.has_signals = lambda: bool(self._signal_handlers)  # type: ignore[attr-defined]
        self._now = 0.0
        self._clock_resolution = CLOCK_RESOLUTION_S
        self._thread_jobs = 0

    def time(self) -> float:
        return self._now

    def _wait(self, timeout: float | None) -> float | None:
        """Nothing is ready: move time to the next timer (0: do not wait for real), or say how long
        to wait for real (None: until I/O) when a thread is at work."""
        if self._thread_jobs:
            return None  # a thread's answer comes through the self-pipe; time stands still meanwhile
        if timeout is None:
            raise VirtualTimeStalled(
                "virtual time: every task is waiting and nothing is scheduled, so nothing can ever happen "
                "again (a task waits for an event nobody will set)")
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if scheduled and timeout < MAXIMUM_SELECT_TIMEOUT:
            self._now = max(self._now, scheduled[0].when())  # exactly the timer's time: no rounding drift
        else:
            self._now += timeout
        return 0

    def run_in_executor(self, executor: Executor | None, func: Callable[[*Ts], T],
                        *args: *Ts) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._thread_jobs += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self._thread_jobs -= 1

    async def shutdown_default_executor(self, *args: Any) -> None:
        """asyncio joins its executor's threads from a thread of its own: wait for it in real time."""
        self._thread_jobs += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._thread_jobs -= 1


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new VirtualEventLoop (as asyncio.run does on a real one). A
    KeyboardInterrupt (a second Ctrl-C) stops at once: the tasks it left waiting on each other may
    never end in virtual time, so their cancellation is not waited for."""
    runner = asyncio.Runner(loop_factory=VirtualEventLoop)
    try:
        return runner.run(main)
    except KeyboardInterrupt:
        with contextlib.suppress(VirtualTimeStalled):
            runner.close()
        raise
    finally:
        runner.close()  # a no-op once closed


class VirtualClock:
    """The Clock of a VirtualEventLoop: scenario time is `start` plus the loop's time; work time and
    scenario time are the same simulated seconds, so `sleep_real` is `sleep` and `to_real` is the
    identity."""

    kind: ClockKind = "virtual"
    time_scale = 1.0

    def __init__(self, start: float = VIRTUAL_START, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        if not isinstance(loop, VirtualEventLoop):
            raise TypeError("VirtualClock needs a VirtualEventLoop: run the coroutine with simulator.clock.run_virtual")
        self.loop = loop
        self._origin = start - loop.time()

    def now(self) -> float:
        return self._origin + self.loop._now

    def monotonic(self) -> float:
        return self.loop._now

    async def sleep(self, scenario_seconds: float) -> None:
        await asyncio.sleep(scenario_seconds if scenario_seconds > 0 else 0)

    async def sleep_real(self, seconds: float) -> None:
        await asyncio.sleep(seconds if seconds > 0 else 0)

    def to_real(self, scenario_seconds: float) -> float:
        return scenario_seconds

    def timeout(self, scenario_seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(max(0.0, scenario_seconds))
