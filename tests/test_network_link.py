"""Link: the network model applied to real HTTP over 127.0.0.1, and airplane mode."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.clock import Clock, ManualClock, RealClock, Timeline
from simulator.network import AirplaneModeError, Link, NetworkError, NetworkModel
from simulator.network.faults import Connection, Loss

HITS = web.AppKey("hits", list[str])
UPLOAD_S = web.AppKey("upload_s", list[float])
CUT = web.AppKey("cut", asyncio.Event)


async def send_bytes(request: web.Request) -> web.Response:
    request.app[HITS].append(request.path)
    return web.Response(body=b"x" * int(request.match_info["n"]), content_type="application/octet-stream")


async def stream_until_cut(request: web.Request) -> web.StreamResponse:
    """Writes 64 KiB pieces until the client goes away (or 64 MiB), then reports the cut."""
    request.app[HITS].append(request.path)
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        for _ in range(1024):
            await response.write(b"y" * 65536)
    except (ConnectionError, asyncio.CancelledError):
        request.app[CUT].set()
        raise
    return response


async def receive_upload(request: web.Request) -> web.Response:
    request.app[HITS].append(request.path)
    loop = asyncio.get_running_loop()
    started_s, size = loop.time(), 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    request.app[UPLOAD_S].append(loop.time() - started_s)
    return web.Response(text=str(size))


async def trickle(request: web.Request) -> web.StreamResponse:
    """`pieces` pieces of 1,000 bytes, `gap` real seconds apart."""
    response = web.StreamResponse()
    response.content_length = 1000 * int(request.query["pieces"])
    await response.prepare(request)
    for _ in range(int(request.query["pieces"])):
        await asyncio.sleep(float(request.query["gap"]))
        await response.write(b"x" * 1000)
    await response.write_eof()
    return response


async def answer_late(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def answer_status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), headers={"Retry-After": "3"})


@pytest.fixture
async def server(aiohttp_server: Any) -> TestServer:
    app = web.Application()
    app[HITS], app[UPLOAD_S], app[CUT] = [], [], asyncio.Event()
    app.router.add_get("/bytes/{n}", send_bytes)
    app.router.add_get("/stream", stream_until_cut)
    app.router.add_post("/upload", receive_upload)
    app.router.add_get("/late", answer_late)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/status/{code}", answer_status)
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


WIRE = 1514 / 1448 * (1 + 22 / 16384)
"""Wire bytes per HTTP byte with the default connection (TLS): 52 B of TCP/IP headers and 14 B of
link framing per 1,448-B segment, and 22 B of TLS framing per 16 KiB record."""


def make_link(session: aiohttp.ClientSession, clock: Clock, **model: Any) -> Link:
    return Link(NetworkModel(np.random.default_rng(1), **model), clock, session)


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def test_a_download_takes_latency_plus_size_over_bandwidth_in_real_time(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), latency_ms=200, down_kbps=2000)
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    response = await link.request("GET", url(server, "/bytes/200000"))
    wall_s = loop.time() - started_s
    # A new TLS connection: 2 L of set-up, then L + B/W with B the 200,000 body bytes + 500 B of
    # headers, on the wire: 200,500 x WIRE = 209,920 B, 0.8397 s at 2,000 kbps. Slow start: the 139
    # segments go in windows of 10, 20, 40, 80 while the pipe holds 1 + L / s = 34 segments (s: one
    # 1,514-B segment's time, 6.056 ms), so the sender waits after the first two windows.
    s = 1514 * 8 / 2_000_000
    expected_s = 2 * 0.2 + 0.2 + 200_500 * WIRE * 8 / 2_000_000 + 2 * (s + 0.2) - s * (10 + 20)  # 1.670 s
    assert response.elapsed_s == pytest.approx(expected_s, rel=0.05)
    assert wall_s == pytest.approx(expected_s, rel=0.05)
    assert (response.status, response.bytes_down, len(response.body)) == (200, 200_000, 200_000)


async def test_a_download_takes_exactly_latency_plus_size_over_bandwidth_on_a_manual_clock(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    link = make_link(session, clock, latency_ms=250, down_kbps=4000)
    response = await link.request("GET", url(server, "/bytes/500000"))
    # 2 L of TCP + TLS set-up, L, then 500,500 B (with the headers) on the wire at 4,000 kbps, and slow
    # start: 346 segments need windows of 10 ... 160; the pipe holds 1 + 0.25 / s = 83.6 segments, so
    # the sender waits after the windows of 10, 20, 40 and 80.
    s = 1514 * 8 / 4_000_000
    expected_s = 2 * 0.25 + 0.25 + 500_500 * WIRE * 8 / 4_000_000 + 4 * (s + 0.25) - s * (10 + 20 + 40 + 80)
    assert expected_s == pytest.approx(2.356, abs=1e-3)
    assert response.elapsed_s == pytest.approx(expected_s, abs=1e-9)
    assert clock.monotonic() == pytest.approx(expected_s, abs=1e-9)
    assert response.bytes_down == 500_000


async def test_an_upload_is_paced_to_the_up_bandwidth_so_the_server_sees_a_slow_client(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), up_kbps=2000)
    body = b"u" * 200_000  # B/W_up = 0.8 s at 2000 kbps; with the headers, on the wire: 0.84 s
    response = await link.request("POST", url(server, "/upload"), body=body)
    assert response.body == b"200000"
    assert response.bytes_up == 200_000
    assert response.elapsed_s == pytest.approx(200_500 * WIRE * 8 / 2_000_000, rel=0.05)  # no latency: no set-up, no slow start
    # The handler starts when the headers and the first 16 KiB chunk arrive (0.07 s in), then waits for the rest.
    assert server.app[UPLOAD_S][0] == pytest.approx((200_000 - 16384) * WIRE * 8 / 2_000_000, rel=0.1)


async def test_an_upload_takes_exactly_size_over_up_bandwidth_on_a_manual_clock(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock(), up_kbps=800)
    response = await link.request("POST", url(server, "/upload"), body=b"u" * 100_000)
    assert response.elapsed_s == pytest.approx((100_000 + 500) * WIRE * 8 / 800_000, abs=1e-9)  # 1.05 s, was 1.0
    assert response.body == b"100000"


async def test_going_offline_cuts_a_download_in_flight_and_closes_its_connection(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), down_kbps=100)  # 64 MiB at 100 kbps: hours
    loop = asyncio.get_running_loop()
    download = asyncio.create_task(link.request("GET", url(server, "/stream")))
    await asyncio.sleep(0.3)
    cut_s = loop.time()
    link.go_offline()
    with pytest.raises(AirplaneModeError, match="cut by airplane mode"):
        await asyncio.wait_for(download, 1)
    assert loop.time() - cut_s < 0.2
    await asyncio.wait_for(server.app[CUT].wait(), 1)  # the server saw the connection go away


async def test_going_offline_cuts_an_upload_in_flight(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), up_kbps=100)  # 1 MB at 100 kbps: 80 s
    upload = asyncio.create_task(link.request("POST", url(server, "/upload"), body=b"u" * 1_000_000))
    await asyncio.sleep(0.3)
    link.go_offline()
    with pytest.raises(AirplaneModeError):
        await asyncio.wait_for(upload, 1)


async def test_going_offline_during_the_latency_wait_cuts_the_request_before_it_is_sent(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), latency_ms=5000)
    request = asyncio.create_task(link.request("GET", url(server, "/bytes/10")))
    await asyncio.sleep(0.05)
    link.go_offline()
    with pytest.raises(AirplaneModeError):
        await asyncio.wait_for(request, 1)
    assert server.app[HITS] == []


async def test_a_cut_on_a_manual_clock_stops_the_transfer_after_the_current_chunk(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    link = make_link(session, clock, down_kbps=1000)
    received: list[bytes] = []

    def sink(chunk: bytes) -> None:
        received.append(chunk)
        link.go_offline()

    with pytest.raises(AirplaneModeError):
        await link.request("GET", url(server, "/bytes/1000000"), sink=sink)
    assert len(received) == 1
    assert clock.monotonic() < 1_000_000 * 8 / 1_000_000 / 10


async def test_a_request_while_offline_fails_at_once_and_works_again_once_online(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    link = make_link(session, clock, latency_ms=100)
    link.go_offline()
    assert not link.online
    with pytest.raises(AirplaneModeError, match="offline"):
        await link.request("GET", url(server, "/bytes/10"))
    assert clock.monotonic() == 0.0 and server.app[HITS] == []
    link.go_online()
    response = await link.request("GET", url(server, "/bytes/10"))
    assert link.online and response.body == b"x" * 10


async def test_wait_online_returns_once_the_link_is_back_online(session: aiohttp.ClientSession) -> None:
    link = make_link(session, ManualClock())
    await asyncio.wait_for(link.wait_online(), 1)  # already online: returns at once
    link.go_offline()
    waiter = asyncio.create_task(link.wait_online())
    await asyncio.sleep(0)
    assert not waiter.done()
    link.go_online()
    await asyncio.wait_for(waiter, 1)


async def test_every_request_is_lost_when_loss_is_one_and_none_reaches_the_server(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock(), loss=1.0)
    for _ in range(20):
        with pytest.raises(NetworkError, match="packet loss"):
            await link.request("GET", url(server, "/bytes/10"))
    assert server.app[HITS] == []


async def test_no_request_is_lost_when_loss_is_zero(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock(), loss=0.0)
    for _ in range(20):
        assert (await link.request("GET", url(server, "/bytes/10"))).status == 200
    assert len(server.app[HITS]) == 20


async def test_the_same_seed_loses_the_same_requests(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async def outcomes(seed: int) -> list[bool]:
        link = Link(NetworkModel(np.random.default_rng(seed), loss=0.5), ManualClock(), session)
        lost = []
        for _ in range(16):
            try:
                await link.request("GET", url(server, "/bytes/1"))
                lost.append(False)
            except NetworkError:
                lost.append(True)
        return lost

    first = await outcomes(9)
    assert first == await outcomes(9)
    assert any(first) and not all(first)


async def test_a_sink_receives_the_body_in_chunks_instead_of_the_response(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock(), down_kbps=50_000)
    chunks: list[bytes] = []
    response = await link.request("GET", url(server, "/bytes/100000"), sink=chunks.append)
    assert response.body == b""
    assert response.bytes_down == 100_000 == sum(map(len, chunks))
    assert max(map(len, chunks)) <= 16 * 1024


async def test_an_http_error_status_is_returned_with_case_insensitive_headers(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    response = await make_link(session, ManualClock()).request("GET", url(server, "/status/503"))
    assert response.status == 503
    assert response.headers["retry-after"] == "3" == response.headers["RETRY-AFTER"]


async def test_a_refused_connection_is_a_network_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NetworkError, match="ClientConnectorError"):
        await make_link(session, ManualClock()).request("GET", f"http://127.0.0.1:{port}/")


async def test_a_server_slower_than_the_timeout_is_a_network_error(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock())
    with pytest.raises(NetworkError, match=r"nothing received for 0.2 s"):
        await link.request("GET", url(server, "/late"), timeout_s=0.2)


async def test_a_slow_answer_that_keeps_coming_is_not_cut_but_a_stalled_one_is(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """The timeout is a read timeout, as a phone's HTTP client has: a body that takes longer than it
    in all, piece after piece, arrives whole; a body that stops for longer than it is a network error."""
    link = make_link(session, ManualClock())
    slow = await link.request("GET", url(server, "/trickle?pieces=8&gap=0.1"), timeout_s=0.5)
    assert slow.status == 200 and slow.body == b"x" * 8000  # 0.8 s in all, never 0.5 s without a piece
    with pytest.raises(NetworkError, match=r"nothing received for 0.5 s"):
        await link.request("GET", url(server, "/trickle?pieces=3&gap=1.0"), timeout_s=0.5)


async def test_cancelling_the_callers_task_is_not_turned_into_an_airplane_mode_error(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), down_kbps=100)
    download = asyncio.create_task(link.request("GET", url(server, "/stream")))
    await asyncio.sleep(0.1)
    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download
    assert link.online


async def test_going_offline_as_the_last_byte_arrives_still_cuts_and_leaves_the_caller_uncancelled(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock())  # unlimited: no pacing sleep after the last chunk

    with pytest.raises(AirplaneModeError):
        await link.request("GET", url(server, "/bytes/10"), sink=lambda chunk: link.go_offline())
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation left pending for the caller


async def test_going_offline_cuts_every_request_in_flight_on_that_link_only(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, RealClock(1.0), down_kbps=100)
    other = make_link(session, RealClock(1.0), latency_ms=100)
    downloads = [asyncio.create_task(link.request("GET", url(server, "/stream"))) for _ in range(2)]
    unaffected = asyncio.create_task(other.request("GET", url(server, "/bytes/10")))
    await asyncio.sleep(0.05)
    link.go_offline()
    results = await asyncio.wait_for(asyncio.gather(*downloads, return_exceptions=True), 1)
    assert all(isinstance(result, AirplaneModeError) for result in results)
    assert (await unaffected).status == 200


async def client_port(request: web.Request) -> web.Response:
    """Answers the client's port: a new port is a new connection."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.Response(text=str(peer[1] if peer else 0))


async def test_each_device_has_its_own_connections_and_airplane_mode_drops_them(aiohttp_server: Any) -> None:
    """A device's own pool: its requests share its kept-alive connection, never another device's;
    after airplane mode its next request opens a new connection (the server sees the client port)."""
    app = web.Application()
    app.router.add_get("/port", client_port)
    srv = await aiohttp_server(app, host="127.0.0.1")
    clock = RealClock(60)
    a, b = (Link(NetworkModel(np.random.default_rng(i), name="loopback"), clock, aiohttp.ClientSession)
            for i in range(2))
    try:
        async def seen(link: Link) -> str:
            return (await link.request("GET", url(srv, "/port"))).body.decode()

        a1, a2, b1 = await seen(a), await seen(a), await seen(b)
        assert a1 == a2 and b1 != a1 and a.owns_connections  # kept alive within a device, never shared
        a.go_offline()
        a.go_online()
        a3 = await seen(a)
        assert a3 not in (a1, b1)  # a new connection after airplane mode
    finally:
        await a.close()
        await b.close()


async def test_a_kept_alive_connection_pays_its_set_up_once_and_the_keep_alive_counts_scenario_time(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """Latency 100 ms, no bandwidth limit, tiny answers: a request takes L on a kept-alive connection,
    L + 2 L (TCP, TLS 1.3) on a new one. Without a device timeline the keep-alive (60 s) is scenario
    time, read from the clock."""
    clock = ManualClock(time_scale=60)
    link = make_link(session, clock, latency_ms=100)

    async def elapsed() -> float:
        return (await link.request("GET", url(server, "/bytes/10"))).elapsed_s

    assert await elapsed() == pytest.approx(0.3)  # the device's first request: a new connection
    assert await elapsed() == pytest.approx(0.1)  # kept alive
    clock.advance(60)  # idle for exactly the keep-alive (1 real second at time_scale 60)
    assert await elapsed() == pytest.approx(0.1)
    clock.advance(61)  # idle for longer: the NAT (or the server) has closed it
    assert await elapsed() == pytest.approx(0.3)
    link.go_offline()
    link.go_online()
    assert await elapsed() == pytest.approx(0.3)  # airplane mode ended the connection


async def test_the_keep_alive_counts_lived_time_and_the_devices_real_connections_follow_the_model(
    aiohttp_server: Any
) -> None:
    """A device's own pool on its lived timeline, at time_scale 60, latency 100 ms: 0.1 s on a kept
    connection, 0.3 s on a new one (TCP + TLS 1.3). A real pause of 5 s (the device's own work: 300
    scenario seconds) keeps the connection, 61 s of waiting does not; the server sees a new real
    connection (client port) exactly when the model charges one, and the same one when it keeps it."""
    app = web.Application()
    app.router.add_get("/port", client_port)
    srv = await aiohttp_server(app, host="127.0.0.1")
    clock = ManualClock(time_scale=60)
    timeline = Timeline(clock)
    sessions: list[aiohttp.ClientSession] = []

    def pool() -> aiohttp.ClientSession:
        sessions.append(aiohttp.ClientSession())
        return sessions[-1]

    link = Link(NetworkModel(np.random.default_rng(1), latency_ms=100), clock, pool, timeline)
    assert link.lived == timeline.now

    async def seen() -> tuple[float, str]:
        response = await link.request("GET", url(srv, "/port"))
        return round(response.elapsed_s, 9), response.body.decode()

    async def server_connections(expected: int) -> int:
        """The connections the server holds, once they are `expected` (or after 1 s: closes travel
        over loopback, this waits for them and does not time anything)."""
        assert srv.runner is not None and srv.runner.server is not None
        held = srv.runner.server.connections
        for _ in range(200):
            if len(held := srv.runner.server.connections) == expected:
                break
            await asyncio.sleep(0.005)
        return len(held)

    try:
        first, port1 = await seen()
        await clock.sleep_real(5)  # the device stores a page: 5 lived seconds, 300 scenario seconds
        assert clock.now() - 1_700_000_000.0 > 300
        kept, port2 = await seen()
        assert (first, kept) == (0.3, 0.1) and port2 == port1  # kept by the model and by the pool
        await timeline.sleep(61, "idle")  # between syncs: the link ends the connection as the wait starts
        assert len(sessions) == 1 and sessions[0].closed and link.model.connections.idle == []
        assert await server_connections(0) == 0  # no socket held through the wait
        new, port3 = await seen()
        assert new == 0.3 and port3 != port1
        await timeline.sleep(59, "idle")  # a shorter wait keeps it, in the model and in the pool
        assert (await seen()) == (0.1, port3)
        await clock.sleep_real(61)  # a real pause past the keep-alive: new at the next request
        new, port4 = await seen()
        assert new == 0.3 and port4 != port3 and await server_connections(1) == 1
        link.model.loss = Loss(1.0)
        with pytest.raises(NetworkError, match="packet loss"):
            await link.request("GET", url(srv, "/port"))  # lost before it is sent: the pool still holds it
        link.model.loss = Loss(0.0)
        new, port5 = await seen()
        assert new == 0.3 and port5 != port4  # a failed request's connection is not reused, real or modelled
        assert (await seen()) == (0.1, port5)
        assert link.model.connections.opened == 4 and len(sessions) == 4
    finally:
        await link.close()


async def test_without_tls_or_keep_alive_the_set_up_is_one_round_trip_on_every_request(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(session, ManualClock(), latency_ms=100, connection=Connection(tls=False, keepalive_s=0))
    times = [(await link.request("GET", url(server, "/bytes/10"))).elapsed_s for _ in range(3)]
    assert times == pytest.approx([0.2] * 3)  # TCP's handshake, then the request's round trip


async def test_a_connection_whose_request_failed_is_not_reused(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    link = make_link(session, clock, latency_ms=100)
    await link.request("GET", url(server, "/bytes/10"))
    link.model.loss = Loss(1.0)
    with pytest.raises(NetworkError, match="packet loss"):
        await link.request("GET", url(server, "/bytes/10"))  # on the kept-alive connection
    link.model.loss = Loss(0.0)
    started = clock.monotonic()
    assert (await link.request("GET", url(server, "/status/503"))).elapsed_s == pytest.approx(0.3)  # new
    assert clock.monotonic() - started == pytest.approx(0.3)
    assert (await link.request("GET", url(server, "/bytes/10"))).elapsed_s == pytest.approx(0.1)  # a 503 keeps it


async def test_slow_start_makes_a_15_kb_answer_take_3_round_trips_on_a_new_connection(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """The reference's point 3: 15 KB (+ 0.5 KB of headers: 11 segments) is one segment more than a new
    connection's first window of 10, so it takes TCP's set-up, the request, and one more round trip;
    once the window has grown, one round trip. (Unlimited bandwidth: only round trips count.)"""
    link = make_link(session, ManualClock(), latency_ms=50, connection=Connection(tls=False))
    first = await link.request("GET", url(server, "/bytes/15000"))
    second = await link.request("GET", url(server, "/bytes/15000"))
    assert (first.elapsed_s, second.elapsed_s) == pytest.approx((3 * 0.05, 0.05))
