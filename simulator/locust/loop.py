"""The asyncio engine on its own event loop, in a real (unpatched) OS thread.

Locust monkey-patches the standard library for gevent (threads become greenlets, sockets and
selectors cooperate with gevent's hub). The device engine is asyncio: it runs here on a loop of its
own in a native thread, with the operating system's own selector (epoll on Linux), so neither
scheduler waits on the other. Greenlets hand it coroutines with `submit` and wait for results with
`wait`, which parks only the calling greenlet: the result wakes gevent's hub through its thread-safe
callback, never by polling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _original(module: str, name: str, default: Any) -> Any:
    """The standard library's own object, also after gevent's monkey patching."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched(module):
        return gevent_monkey.get_original(module, name)
    return default


def _selector() -> selectors.BaseSelector:
    cls = _original("selectors", "EpollSelector", None) if sys.platform == "linux" else None
    return cls() if cls is not None else _original("selectors", "DefaultSelector", selectors.DefaultSelector)()


def _start_native_thread(target: Callable[[], None], name: str) -> None:
    if sys.modules.get("gevent.monkey") is not None and sys.modules["gevent.monkey"].is_module_patched("threading"):
        start_new_thread = _original("_thread", "start_new_thread", None)
        start_new_thread(target, ())
    else:
        threading.Thread(target=target, name=name, daemon=True).start()


class EngineLoop:
    """An asyncio event loop running forever in a native thread, until `close()`."""

    def __init__(self, name: str = "syncsim-engine") -> None:
        self.loop = asyncio.SelectorEventLoop(_selector())
        self.loop.set_default_executor(NativeExecutor())
        self._started = concurrent.futures.Future[None]()
        _start_native_thread(self._main, name)
        self._started.result(timeout=10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set_result, None)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the engine's loop; returns a thread-safe future of its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run a plain function on the engine's loop (to touch its objects from another thread)."""
        async def run() -> T:
            return fn()
        return self.submit(run())

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Submit and wait (greenlet-friendly under gevent)."""
        return wait(self.submit(work), timeout)

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)


class NativeExecutor(concurrent.futures.ThreadPoolExecutor):
    """run_in_executor for the engine loop: each call in a native thread of its own (gevent's patched
    thread pool would run it as a greenlet that the engine thread never schedules). The engine only
    needs it rarely (name resolution of a non-literal host). A ThreadPoolExecutor only because
    asyncio accepts no other kind; its own pool is never used."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future = concurrent.futures.Future[T]()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        _start_native_thread(work, "syncsim-engine-call")
        return future


def wait(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """The future's result. Under gevent only the calling greenlet waits: the hub runs on, and the
    engine thread wakes it through gevent's thread-safe callback. Without gevent, a plain wait."""
    hub_module = sys.modules.get("gevent.hub")
    if hub_module is None or not _gevent_patched():
        return future.result(timeout)
    import gevent.event

    ready = gevent.event.AsyncResult()
    hub_loop = hub_module.get_hub().loop
    future.add_done_callback(lambda _: hub_loop.run_callback_threadsafe(ready.set, None))
    ready.get(timeout=timeout)
    return future.result(timeout=0)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))
