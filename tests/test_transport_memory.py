"""The in-process transport: a client reaches an aiohttp application through memory pipes, byte for
byte as over a socket, with a socket's flow control and closing."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from simulator.clock import VirtualClock, run_virtual
from simulator.server.app import make_app
from simulator.server.seed import build_store
from simulator.transport import MemoryTransport, SocketTransport
from simulator.transport.memory import HIGH_WATER, MEMORY_HOST
from tests.conftest import small_scenario

PIECE = 32 * 1024


async def _serve(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


def _answer(status: int, headers: Any, body: bytes, base: str) -> tuple[int, dict[str, str], bytes]:
    """The answer with its own base URL (in @odata.context) as <base>; Date and Server, set at the
    moment of the answer, and Content-Length, which follows the URL's length, left out."""
    drop = {"date", "server", "content-length"}
    return status, {k: v for k, v in headers.items() if k.lower() not in drop}, body.replace(base.encode(), b"<base>")


async def _fetch(session: aiohttp.ClientSession, base: str, path: str,
                 headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with session.get(base + path, headers=headers) as resp:
        return _answer(resp.status, resp.headers, await resp.read(), base)


async def test_the_mock_server_answers_the_same_bytes_through_memory_as_through_a_socket() -> None:
    from simulator.clock import ManualClock

    scenario = small_scenario()
    clock = ManualClock()
    app = make_app(scenario, build_store(scenario, clock.now()), clock, admin_key="k")
    runner = await _serve(app)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    token_headers = {"Authorization": "Bearer k"}
    paths = ["/api/data/v9.2/EntityDefinitions(LogicalName='account')?$select=LogicalName",
             "/api/data/v9.2/accounts?$top=3", "/api/data/v9.2/nothing_here"]
    async with MemoryTransport(runner.server).session(limit=2, keepalive_s=15, device=True) as memory, \
            SocketTransport().session(limit=2, keepalive_s=15, device=True) as sockets:
        async with memory.post(f"http://{MEMORY_HOST}/_syncsim/token", json={"user": "technician-0001"},
                               headers=token_headers) as resp:
            user = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        for path in paths:
            via_memory = await _fetch(memory, f"http://{MEMORY_HOST}", path, user)
            via_socket = await _fetch(sockets, f"http://127.0.0.1:{port}", path, user)
            assert via_memory == via_socket, path
        assert via_memory[0] == 404
    await runner.cleanup()


def test_a_slow_reader_holds_back_a_streamed_answer_as_a_receive_window_does() -> None:
    written: list[int] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 40 * PIECE
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"x" * PIECE)  # waits while the client has not taken enough
            written.append(PIECE)
        return response

    async def main() -> tuple[int, int, float]:
        clock = VirtualClock()
        app = web.Application()
        app.router.add_get("/big", stream)
        runner = await _serve(app)
        ahead = 0
        async with MemoryTransport(runner.server).session(limit=1, keepalive_s=0, device=True) as session, \
                session.get(f"http://{MEMORY_HOST}/big") as resp:
            got = 0
            async for chunk in resp.content.iter_chunked(16 * 1024):
                got += len(chunk)
                ahead = max(ahead, sum(written) - got)
                await clock.sleep(0.1)  # a slow network: 160 KiB/s
        await runner.cleanup()
        return got, ahead, clock.monotonic()

    got, ahead, took = run_virtual(main())
    assert got == 40 * PIECE
    # the server never ran far ahead of the reader: at most the pipe's high water mark (16 KiB) and a
    # piece written before the pause (32 KiB), and what the reader's own buffer takes in at once (two
    # pieces): 112 KiB, not the 1.25 MiB answer
    assert HIGH_WATER == 16 * 1024 and ahead <= 112 * 1024
    assert abs(took - 80 * 0.1) < 1e-6  # 80 reads of 16 KiB, 0.1 s each


def test_a_client_that_goes_away_mid_answer_ends_the_servers_stream() -> None:
    ended: list[str] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100 * PIECE
        await response.prepare(request)
        try:
            for _ in range(100):
                await response.write(b"x" * PIECE)
        except ConnectionError as exc:
            ended.append(type(exc).__name__)
            raise
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/big", stream)
        runner = await _serve(app)
        async with MemoryTransport(runner.server).session(limit=1, keepalive_s=0, device=True) as session:
            resp = await session.get(f"http://{MEMORY_HOST}/big")
            await resp.content.readexactly(PIECE)
            resp.close()  # the device drops the connection (airplane mode)
            await asyncio.sleep(1)
        await runner.cleanup()

    run_virtual(main())
    assert ended and ended[0].endswith("Error")
