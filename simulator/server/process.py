"""The mock server in a process of its own, so that devices and server never share an event loop or a
core (`syncsim run` uses it by default; `start_server` stays for in-process use and tests).

The child seeds the scenario's store and listens on an ephemeral loopback port with a real-time clock
at the scenario's time_scale, then tells the parent its base URL and admin key through a pipe. It
stops when the parent says so or goes away (the pipe closes). The runner then joins the server's
clock to its own and starts the run through /_syncsim/ (PUT /_syncsim/clock, POST /_syncsim/run),
as it does for a server it did not start (`--target`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.clock import RealClock
from simulator.scenario import Scenario
from simulator.server.serve import raise_fd_limit, start_server

READY_TIMEOUT_S = 900.0  # real seconds allowed for seeding a large scenario before the server answers


class ServerProcessError(RuntimeError):
    """The server process did not start (its message says why)."""


@dataclass
class ServerProcess:
    """A running server process: where it listens, its admin key, and the process itself."""

    base_url: str
    admin_key: str
    process: multiprocessing.process.BaseProcess
    _conn: multiprocessing.connection.Connection

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the server to stop, wait for it, and end it if it does not."""
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
        self._conn.close()


def start_server_process(scenario: Scenario) -> ServerProcess:
    """Start the server for `scenario` in a new process; returns once it listens (blocking: call it
    from a thread inside an event loop)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_child, args=(scenario.model_dump(mode="json"), child), name="syncsim-server",
                          daemon=True)
    process.start()
    child.close()
    message = _wait_ready(parent, process)
    if message[0] != "ready":
        process.join(5)
        raise ServerProcessError(f"the server process could not start: {message[1]}")
    return ServerProcess(message[1], message[2], process, parent)


def _wait_ready(conn: multiprocessing.connection.Connection, process: multiprocessing.process.BaseProcess) -> Any:
    waited = 0.0
    while not conn.poll(0.5):
        waited += 0.5
        if not process.is_alive():
            raise ServerProcessError(f"the server process exited with status {process.exitcode} before listening"
                                     + _script_hint())
        if waited > READY_TIMEOUT_S:
            process.terminate()
            raise ServerProcessError(f"the server process did not listen within {READY_TIMEOUT_S:g} s")
    try:
        return conn.recv()
    except EOFError:
        raise ServerProcessError("the server process closed its pipe before listening" + _script_hint()) from None


def _script_hint() -> str:
    """When syncsim runs from the user's own script: the usual cause, and what to do."""
    main = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    if not main.endswith(".py") or Path(main).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        return ""
    return (f"; if {Path(main).name} calls syncsim at its top level, put those calls under "
            "`if __name__ == \"__main__\":` (the server's process starts by importing the script again)")


def _child(scenario_data: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the run decides, then stops it
    raise_fd_limit()
    try:
        asyncio.run(_serve(Scenario.model_validate(scenario_data), conn))
    except Exception as exc:  # reported to the parent, which names it
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


async def _serve(scenario: Scenario, conn: multiprocessing.connection.Connection) -> None:
    server = await start_server(scenario, clock=RealClock(scenario.time_scale))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)  # "stop", or EOF when the parent is gone
    try:
        conn.send(("ready", server.base_url, server.admin_key))
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        await server.close()


# --- the same server as a plain child process, driven over stdin/stdout ---------------------------
# For parents that cannot use multiprocessing well (Locust's gevent-patched processes): run
# `python -m simulator.server.process SCENARIO`; it prints one JSON line {"base_url", "admin_key"}
# once it listens and stops when its stdin closes.
def main(argv: list[str] | None = None) -> int:
    import json
    import os
    import sys

    from simulator.scenario import ScenarioError, load_scenario

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m simulator.server.process SCENARIO", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args[0])
    except ScenarioError as exc:
        print(f"syncsim: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()

    async def serve() -> None:
        server = await start_server(scenario, clock=RealClock(scenario.time_scale))
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def readable() -> None:
            if not os.read(sys.stdin.fileno(), 4096):  # EOF: the parent closed our stdin or went away
                stop.set()

        loop.add_reader(sys.stdin.fileno(), readable)
        try:
            print(json.dumps({"base_url": server.base_url, "admin_key": server.admin_key}), flush=True)
            await stop.wait()
        finally:
            loop.remove_reader(sys.stdin.fileno())
            await server.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
