"""Which server a run drives, how its clients reach it, and the runner's calls to its /_syncsim/
extensions.

A run drives one of four servers:
- `virtual` (the default of `syncsim run`): the embedded mock server on the run's own virtual-time
  event loop, reached through memory pipes (transport/memory.py): no socket, no port;
- `process` (`--clock real`): the embedded server in a process of its own, over loopback sockets, so
  devices and server each get a core and never share an event loop;
- `in_process`: the same server on the runner's own real-time event loop, over sockets (tests);
- a `Target`: an already running `syncsim serve` of the same scenario, by URL and admin key.

Whatever the server, the runner joins its clock to the run's (PUT /_syncsim/clock) unless it already
shares it, starts the run (POST /_syncsim/run) and ends with its snapshots, write log and counters,
all over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from yarl import URL

from simulator.clock import Clock
from simulator.scenario import Scenario
from simulator.server.handlers.admin import counters_of
from simulator.server.process import start_server_process
from simulator.server.serve import ServeError, loopback_host, make_ssl_client_context, serve_app, start_server
from simulator.transport import MemoryTransport, SocketTransport, Transport
from simulator.transport.memory import MEMORY_HOST

Where = Literal["virtual", "process", "in_process"]
VIRTUAL_ADMIN_KEY = "syncsim-virtual-run"  # no socket reaches a virtual run's server: its key guards nothing

Counters = Callable[[], dict[str, Any]]


class TargetError(Exception):
    """A server the run cannot use: unreachable, not loopback, another scenario, a wrong admin key."""


@dataclass(frozen=True, slots=True)
class Target:
    """An already running `syncsim serve`: its base URL, admin key, and CA file (https only)."""

    url: str
    admin_key: str
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the run's server is, how to administer it, how clients reach it (sockets, with the CA
    to trust for https, or memory pipes), and whether it must join the run's clock."""

    base_url: str
    admin_key: str
    transport: Transport
    joins_clock: bool = True  # False: it runs on the runner's own clock already (in process)
    counters: Counters | None = None  # its counters read in process (a virtual run), not over HTTP


class Admin:
    """The runner's own calls to the server's /_syncsim/ extensions."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str) -> None:
        self.session, self.base, self.headers = session, base_url, {"Authorization": f"Bearer {key}"}

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        async with self.session.request(method, f"{self.base}{path}", headers=self.headers, **kw) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                kind = resp.headers.get("Content-Type", "no Content-Type")
                raise TargetError(f"{self.base}: {method} {path} answered HTTP {resp.status} ({kind}), not syncsim's "
                                  "JSON: this is not a syncsim server (start one with `syncsim serve SCENARIO`)") from None
            if resp.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status} {body}")
            return body

    async def health(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/_syncsim/health"))

    async def token(self, user: str) -> str:
        return str((await self._call("POST", "/_syncsim/token", json={"user": user}))["access_token"])

    async def join_clock(self, clock: Clock) -> None:
        await self._call("PUT", "/_syncsim/clock", json={"time_scale": clock.time_scale, "now": clock.now()})

    async def start_run(self, started_at: float) -> None:
        await self._call("POST", "/_syncsim/run", json={"started_at": started_at})

    async def snapshot(self, user: str) -> dict[str, Any]:
        """What the user's device should hold: {"tables": {table: {id: version}}, "files": {key: [size, crc]}}."""
        return dict(await self._call("GET", "/_syncsim/snapshot", params={"user": user}))

    async def ledger(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/_syncsim/ledger"))

    async def counters(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/_syncsim/counters"))

    async def back_office(self, enabled: bool) -> None:
        await self._call("PUT", "/_syncsim/activity", json={"back_office": enabled})


@contextlib.asynccontextmanager
async def server_for_run(scenario: Scenario, clock: Clock, where: Where | Target) -> AsyncIterator[Endpoint]:
    """The run's server, started (and stopped) here unless it is a Target."""
    if isinstance(where, Target):
        yield target_endpoint(where)
    elif where == "virtual":
        if clock.kind != "virtual":
            raise ValueError("a virtual run's server needs the run's VirtualClock")
        runner = await serve_app(scenario, clock, VIRTUAL_ADMIN_KEY)
        app, protocols = runner.app, runner.server
        assert protocols is not None  # set up by serve_app
        try:
            yield Endpoint(f"http://{MEMORY_HOST}", VIRTUAL_ADMIN_KEY, MemoryTransport(protocols), joins_clock=False,
                           counters=lambda: counters_of(app))
        finally:
            await runner.cleanup()
    elif where == "in_process":
        server = await start_server(scenario, clock=clock)
        try:
            yield Endpoint(server.base_url, server.admin_key, SocketTransport(), joins_clock=False)
        finally:
            await server.close()
    else:
        child = await asyncio.to_thread(start_server_process, scenario)
        try:
            yield Endpoint(child.base_url, child.admin_key, SocketTransport())
        finally:
            await asyncio.to_thread(child.close)


def target_endpoint(target: Target) -> Endpoint:
    """A Target as an Endpoint: its URL must be http(s) on loopback; https needs the server's CA file."""
    url = URL(target.url)
    if url.scheme not in ("http", "https") or not url.host:
        raise TargetError(f"--target {target.url}: give the server's base URL, e.g. http://127.0.0.1:8080")
    try:
        loopback_host(url.host)
    except ServeError as exc:
        raise TargetError(f"--target {target.url}: {exc}") from None
    context = None
    if url.scheme == "https":
        if target.ca_file is None:
            raise TargetError(f"--target {target.url}: an https server needs --ca-file (the CA file `syncsim serve --tls` printed)")
        context = make_ssl_client_context(target.ca_file)
    return Endpoint(str(url.origin()), target.admin_key, SocketTransport(context or True))


async def check_same_scenario(admin: Admin, scenario: Scenario, base_url: str) -> None:
    """The server must serve this scenario (name, seed, users per class), with this admin key."""
    try:
        health = await admin.health()
        await admin.counters()  # needs the admin key
    except aiohttp.ClientError as exc:
        raise TargetError(f"{base_url}: cannot reach the server: {exc}") from None
    except RuntimeError as exc:
        raise TargetError(f"{base_url}: {exc} (is the admin key right?)") from None
    want = {"scenario": scenario.name, "seed": scenario.seed, "users": scenario.class_counts()}
    got = {k: health.get(k) for k in want}
    if got != want:
        raise TargetError(f"{base_url} serves {got}, the run is {want}: start `syncsim serve` with the same "
                          "scenario file (and --seed/--devices overrides)")
