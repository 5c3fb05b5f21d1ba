"""Servers in child processes, so the load generator and the server each get one of the two cores.

`ChildServer("syncsim", scenario)` seeds and serves a scenario with `start_server` (RealClock);
`ChildServer("bare", (pages, origin))` serves captured pages (links rebased onto itself) and hello
world. The parent talks to the child over a pipe: "cpu" answers the child's CPU seconds so far
(time.process_time), "stop" shuts it down. Children are started with spawn, so nothing of the
parent's event loop or memory leaks into them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from bench.bare import rebase, start_bare

START_TIMEOUT_S = 120.0


class ChildServer:
    """An async context manager around one server process; base_url and admin_key once started."""

    def __init__(self, kind: str, payload: Any) -> None:
        self.kind, self.payload = kind, payload
        self.base_url = ""
        self.admin_key = ""
        self._conn: Connection | None = None
        self._proc: Any = None

    async def __aenter__(self) -> ChildServer:
        ctx = mp.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(self.kind, self.payload, theirs), daemon=True,
                                 name=f"bench-{self.kind}-server")
        self._proc.start()
        theirs.close()
        status, detail = await asyncio.to_thread(self._recv, START_TIMEOUT_S)
        if status != "ready":
            await self.close()
            raise RuntimeError(f"{self.kind} server did not start: {detail}")
        self.base_url, self.admin_key = detail
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the child has used so far."""
        assert self._conn is not None
        self._conn.send("cpu")
        return float(self._recv(30.0))

    def _recv(self, timeout_s: float) -> Any:
        assert self._conn is not None
        if not self._conn.poll(timeout_s):
            raise TimeoutError(f"{self.kind} server did not answer within {timeout_s:g} s")
        try:
            return self._conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.kind} server process exited (see its traceback above)") from None

    async def close(self) -> None:
        """Ask the child to stop; terminate it (this process's own child) if it does not."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if self._conn is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
        await asyncio.to_thread(proc.join, 15)
        if proc.is_alive():
            proc.terminate()
            await asyncio.to_thread(proc.join, 5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- in the child ----------------------------------------------------------------------------------
def _child_main(kind: str, payload: Any, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    try:
        asyncio.run(_serve(kind, payload, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


async def _serve(kind: str, payload: Any, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if kind == "syncsim":
        from simulator.server.serve import start_server

        server = await start_server(payload)
        ready, close = (server.base_url, server.admin_key), server.close
    elif kind == "bare":
        pages, origin = payload
        runner, base = await start_bare(pages)
        pages.update(rebase(pages, origin, base))
        ready, close = (base, ""), runner.cleanup
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    conn.send(("ready", ready))
    threading.Thread(target=_control, args=(conn, loop, stop), daemon=True).start()
    try:
        await stop.wait()
    finally:
        await close()


def _control(conn: Connection, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Answer "cpu" requests from the parent until "stop" (or the pipe closes)."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = "stop"
        if message == "cpu":
            conn.send(time.process_time())
            continue
        loop.call_soon_threadsafe(stop.set)
        return


def run_in_child(job: Callable[..., Awaitable[dict[str, Any]]], args: tuple[Any, ...], name: str,
                 timeout_s: float) -> dict[str, Any]:
    """`asyncio.run(job(*args))` in a fresh spawned process (so no earlier benchmark's heap is in
    it); its result, or a RuntimeError with the child's traceback. `job` must be a module-level
    async function (spawn pickles it by name)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_job_main, args=(job, args, theirs), name=name)
    proc.start()
    theirs.close()
    try:
        if not ours.poll(timeout_s):
            raise TimeoutError(f"the {name} process did not finish within {timeout_s:g} s")
        try:
            status, payload = ours.recv()
        except EOFError:
            raise RuntimeError(f"the {name} process exited ({proc.exitcode}) without a result") from None
        if status != "ok":
            raise RuntimeError(f"the {name} process failed:\n{payload}")
        proc.join(30)
        return dict(payload)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
        ours.close()


def _job_main(job: Callable[..., Awaitable[dict[str, Any]]], args: tuple[Any, ...], conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends us
    try:
        conn.send(("ok", asyncio.run(job(*args))))  # type: ignore[arg-type]
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()
