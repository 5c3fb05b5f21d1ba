"""An in-process transport: a device's aiohttp client reaches the server's aiohttp application
through a pipe of memory instead of a socket.

The bytes are HTTP/1.1 as on a socket: the client's request is parsed by the server's own
`RequestHandler` (the same middlewares, handlers, status codes, headers and bodies, streamed pages
included) and the answer by the client's own `ResponseHandler`. Each end is an asyncio Transport
that hands what is written to the other end's protocol on the next loop turn, and keeps flow control
as a socket does: a reader that pauses stops receiving, and a writer whose bytes wait unread past
`HIGH_WATER` is paused until they drain below `LOW_WATER` (so a slow device holds back the server's
streamed page, as a receive window does). Closing one end delivers what it wrote, then ends the
other (`connection_lost`); aborting ends both at once.

No file descriptor, no port, no kernel buffer: a virtual-time run of 20,000 devices holds 20,000
pipes, and the only time a request takes is the time the network model and the server model give it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.client_proto import ResponseHandler

from .sockets import client_session, keepalive_args

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

HIGH_WATER = 16 * 1024
"""Bytes written but not yet read past which the writer is paused (a socket's send buffer and the
peer's receive window together)."""
LOW_WATER = 4 * 1024
"""Bytes left unread below which a paused writer resumes."""

MEMORY_HOST = "dataverse.syncsim.invalid"
"""The host name in a virtual run's URLs: never resolved (`.invalid` is reserved), never a socket."""

_ports = itertools.count(40_000)


class PipeEnd(asyncio.Transport):
    """One end of an in-memory connection (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: tuple[str, int], peer_name: tuple[str, int]) -> None:
        super().__init__()
        self._loop = loop
        self._extra = {"peername": peer_name, "sockname": name, "socket": None, "sslcontext": None}
        self._protocol: asyncio.BaseProtocol | None = None
        self.peer: PipeEnd | None = None
        self._inbox: deque[bytes] = deque()  # written by the peer, not yet handed to our protocol
        self._inbox_bytes = 0
        self._reading = True
        self._flush_scheduled = False
        self._eof_pending = False  # the peer closed: end once the inbox is handed over
        self._closing = False
        self._lost = False
        self._writer_paused = False  # our protocol was told pause_writing

    # --- asyncio.BaseTransport -------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Deliver what was written, then end both ends (as a graceful FIN)."""
        if self._closing:
            return
        self._closing = True
        if self.peer is not None:
            self.peer._peer_closed()
        self._loop.call_soon(self._connection_lost, None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    # --- asyncio.ReadTransport -------------------------------------------------------------
    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._schedule_flush()

    # --- asyncio.WriteTransport ------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        peer = self.peer
        if peer is None or peer._lost:
            return
        peer._receive(bytes(data))
        if peer._inbox_bytes > HIGH_WATER and not self._writer_paused and not self._lost:
            self._writer_paused = True
            protocol = self._protocol
            if isinstance(protocol, asyncio.Protocol):
                protocol.pause_writing()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("an in-memory pipe ends with close()")

    def get_write_buffer_size(self) -> int:
        return self.peer._inbox_bytes if self.peer is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return LOW_WATER, HIGH_WATER

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # fixed water marks: the same flow control for every connection

    def abort(self) -> None:
        """End both ends at once; what was not read is lost (as a reset)."""
        self._inbox.clear()
        self._inbox_bytes = 0
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._connection_lost, None)
        peer = self.peer
        if peer is not None and not peer._closing:
            peer._closing = True
            peer._inbox.clear()
            peer._inbox_bytes = 0
            self._loop.call_soon(peer._connection_lost, ConnectionResetError("connection reset by peer"))

    # --- between the two ends --------------------------------------------------------------
    def _receive(self, data: bytes) -> None:
        self._inbox.append(data)
        self._inbox_bytes += len(data)
        self._schedule_flush()

    def _peer_closed(self) -> None:
        self._eof_pending = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._lost:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Hand the inbox to our protocol while it reads; resume the peer's writer once drained."""
        self._flush_scheduled = False
        protocol = self._protocol
        while self._inbox and self._reading and not self._lost and isinstance(protocol, asyncio.Protocol):
            data = self._inbox.popleft()
            self._inbox_bytes -= len(data)
            protocol.data_received(data)
        peer = self.peer
        if peer is not None and peer._writer_paused and self._inbox_bytes <= LOW_WATER and not peer._lost:
            peer._writer_paused = False
            if isinstance(peer._protocol, asyncio.Protocol):
                peer._protocol.resume_writing()
        if self._eof_pending and not self._inbox and not self._lost:
            self._closing = True
            self._connection_lost(None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._inbox.clear()
        self._inbox_bytes = 0
        if self._protocol is not None:
            self._protocol.connection_lost(exc)


def pipe(loop: asyncio.AbstractEventLoop) -> tuple[PipeEnd, PipeEnd]:
    """Two connected ends: (client's, server's)."""
    port = next(_ports)
    client_name, server_name = ("127.0.0.1", port), (MEMORY_HOST, 80)
    client, server = PipeEnd(loop, client_name, server_name), PipeEnd(loop, server_name, client_name)
    client.peer, server.peer = server, client
    return client, server


class MemoryConnector(aiohttp.BaseConnector):
    """An aiohttp connector whose connections are pipes to `server` (an aiohttp `web.Server`, the
    protocol factory of a set-up `AppRunner`): aiohttp's pool, limits and keep-alive as usual."""

    def __init__(self, server: web.Server, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server = server

    async def _create_connection(self, req: ClientRequest, traces: list[Trace],
                                 timeout: aiohttp.ClientTimeout) -> ResponseHandler:
        client_end, server_end = pipe(self._loop)
        protocol = self._factory()
        server_protocol = self._server()
        client_end.set_protocol(protocol)
        server_end.set_protocol(server_protocol)
        server_protocol.connection_made(server_end)
        protocol.connection_made(client_end)
        return protocol


class MemoryTransport:
    """Sessions whose connections are pipes to one in-process server (`web.Server`)."""

    kind = "memory"

    def __init__(self, server: web.Server) -> None:
        self.server = server

    def session(self, *, limit: int, keepalive_s: float, device: bool) -> aiohttp.ClientSession:
        return client_session(MemoryConnector(self.server, limit=limit, **keepalive_args(keepalive_s)), device)
