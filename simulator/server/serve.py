"""Run the mock server standalone, on loopback only, optionally over TLS with a throw-away CA.

`start_server` seeds a store, builds the app and listens on 127.0.0.1 / ::1 (never anything else:
this tool must not be reachable from the network). With `tls=True` a trustme CA issues a
certificate for 127.0.0.1, localhost and ::1; the CA is written to `<state_dir>/ca.pem` so clients
can trust it (`REQUESTS_CA_BUNDLE` for requests and the Python SDK, `make_ssl_client_context` for
aiohttp). `serve_forever` is what `syncsim serve` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import resource
import secrets
import shutil
import signal
import socket
import ssl
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aiohttp import web

from simulator.clock import Clock, RealClock
from simulator.scenario import Scenario
from simulator.server.app import make_app
from simulator.server.http_errors import DataverseRunner
from simulator.server.seed import build_store

CA_FILE = "ca.pem"
_LOOPBACK_ONLY = "syncsim only listens on 127.0.0.0/8, ::1 or localhost"


class ServeError(ValueError):
    """A server that cannot listen: a host that is not loopback, a port outside 0..65535, or an
    address already in use. The message names the host or port and what is allowed."""


@dataclass
class RunningServer:
    """A listening server: where it is, the admin key, the CA file (TLS only) and its aiohttp objects."""

    base_url: str
    admin_key: str
    ca_path: Path | None
    app: web.Application
    runner: web.AppRunner
    _temp_dir: Path | None = field(default=None, repr=False)

    async def close(self) -> None:
        """Stop listening, close connections, and remove the temporary state dir if one was made."""
        await self.runner.cleanup()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def raise_fd_limit() -> int:
    """Let one process hold a socket per device: raise the open-file limit to its hard maximum."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loopback_host(host: str) -> str:
    """The address to bind for `host`, which must be loopback (127.0.0.0/8, ::1 or localhost).

    "localhost" binds 127.0.0.1 only, so an ephemeral port is one port. Anything else raises ServeError.
    """
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        raise ServeError(f"host {host!r} is not a loopback address; {_LOOPBACK_ONLY}") from None
    if not address.is_loopback:
        raise ServeError(f"host {host!r} is not a loopback address; {_LOOPBACK_ONLY}")
    return str(address)


def _server_tls(state_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """A server SSLContext with a cert for 127.0.0.1, localhost and ::1, and the CA PEM's path."""
    import trustme  # imported here: only TLS servers need it

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(context)
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_path = state_dir / CA_FILE
    ca.cert_pem.write_to_path(str(ca_path))
    return context, ca_path


def make_ssl_client_context(ca_path: Path | str) -> ssl.SSLContext:
    """A client SSLContext that trusts the server's CA (for aiohttp: `connector=TCPConnector(ssl=ctx)`)."""
    return ssl.create_default_context(cafile=str(ca_path))


async def start_server(
    scenario: Scenario,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: bool = False,
    admin_key: str | None = None,
    clock: Clock | None = None,
    state_dir: Path | None = None,
) -> RunningServer:
    """Seed the scenario's store and listen on host:port (0: an ephemeral port), loopback only.

    A host that is not loopback, a port outside 0..65535 or one already in use raises ServeError.

    The clock defaults to `RealClock(time_scale=1.0)`: a standalone server answers real-time clients,
    so token lifetimes and throttling windows run at wall-clock speed. Pass the run's clock to share
    scenario time with simulated devices.
    """
    bind = loopback_host(host)
    _check_port(port)
    _check_free(bind, port)
    clock = clock or RealClock(time_scale=1.0)
    admin_key = admin_key or secrets.token_urlsafe(24)
    temp_dir: Path | None = None
    ssl_context: ssl.SSLContext | None = None
    ca_path: Path | None = None
    if tls:
        if state_dir is None:
            temp_dir = state_dir = Path(tempfile.mkdtemp(prefix="syncsim-"))
        ssl_context, ca_path = _server_tls(state_dir)

    runner = await serve_app(scenario, clock, admin_key)
    app = runner.app
    try:
        site = web.TCPSite(runner, bind, port, ssl_context=ssl_context)
        await site.start()
    except BaseException as exc:
        await runner.cleanup()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ServeError(_cannot_listen(bind, port, exc)) from exc
        raise
    real_port = runner.addresses[0][1]
    shown = f"[{bind}]" if ":" in bind else bind
    base_url = f"{'https' if tls else 'http'}://{shown}:{real_port}"
    return RunningServer(base_url, admin_key, ca_path, app, runner, temp_dir)


async def serve_app(scenario: Scenario, clock: Clock, admin_key: str) -> DataverseRunner:
    """Seed the scenario's store and set up its app on `clock`, listening nowhere yet: a site
    (`start_server`) or an in-memory transport (a virtual-time run, through `runner.server`) serves it."""
    store = build_store(scenario, clock.now())
    app = make_app(scenario, store, clock, admin_key=admin_key)
    runner = DataverseRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    return runner


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"port {port!r} is not allowed; give a port from 0 to 65535 (0 picks a free one)")


def _check_free(bind: str, port: int) -> None:
    """Fail at once, not after seeding a large store, if `port` on `bind` cannot be bound (0 always can)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name == "posix":  # as asyncio does: a port left in TIME_WAIT is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as exc:
            raise ServeError(_cannot_listen(bind, port, exc)) from exc


def _cannot_listen(bind: str, port: int, exc: OSError) -> str:
    """One line on why binding `bind`:`port` failed, and what to do instead."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {bind} is already in use; choose another port, or 0 for a free one"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} on {bind}; use a port from 1024 to 65535, or 0 for a free one"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {bind}: this machine has no such loopback address; try 127.0.0.1"
    return f"cannot listen on port {port} on {bind}: {exc.strerror or exc}"


def describe(server: RunningServer, scenario: Scenario) -> str:
    """What `syncsim serve` prints: URLs, admin key, CA file and a curl line to get a token."""
    user = _example_user(scenario)
    cacert = f"--cacert {server.ca_path} " if server.ca_path else ""
    table = scenario.tables[0].set_name if scenario.tables else "accounts"
    lines = [
        f"syncsim: scenario {scenario.name!r} serving at {server.base_url}",
        f"  Web API root : {server.base_url}/api/data/v9.2/",
        f"  admin key    : {server.admin_key}",
    ]
    if server.ca_path:
        lines += [
            f"  CA file      : {server.ca_path}",
            f"  trust it     : export REQUESTS_CA_BUNDLE={server.ca_path}  (requests / the Dataverse SDK)",
        ]
    lines += [
        "  get a token  :",
        f"    curl -s {cacert}-X POST -H 'Authorization: Bearer {server.admin_key}' "
        f"-H 'Content-Type: application/json' -d '{{\"user\": \"{user}\"}}' {server.base_url}/_syncsim/token",
        "  then         :",
        f"    curl -s {cacert}-H 'Authorization: Bearer <access_token>' "
        f"'{server.base_url}/api/data/v9.2/{table}?$top=1'",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _example_user(scenario: Scenario) -> str:
    """The first scenario user's name (`<class>-0001`), or the back-office user."""
    for user_class, count in scenario.class_counts().items():
        if count > 0:
            return f"{user_class}-0001"
    return "backoffice"


def serve_forever(
    scenario: Scenario,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: bool = False,
    admin_key: str | None = None,
    clock: Clock | None = None,
    state_dir: Path | None = None,
    out: TextIO | None = None,
) -> None:
    """Start the server, print how to reach it, and run until Ctrl-C (then close cleanly).

    A non-loopback host or a bad port raises ServeError (a ValueError) before anything starts; so does
    an address already in use, before anything is printed.
    """
    loopback_host(host)
    _check_port(port)
    stream = out or sys.stdout

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
                loop.add_signal_handler(sig, stop.set)
        server = await start_server(scenario, host=host, port=port, tls=tls, admin_key=admin_key,
                                    clock=clock, state_dir=state_dir)
        try:
            print(describe(server, scenario), file=stream, flush=True)
            await stop.wait()
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    print("syncsim: stopped.", file=stream, flush=True)
