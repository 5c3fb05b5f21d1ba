"""The socket transport (real time): devices reach a server over loopback TCP, as phones would over
their network, each with its own small connection pool and receive window."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiohttp

DEVICE_READ_BUFFER = 16 * 1024
"""aiohttp's read_bufsize for a device: it stops reading past twice this. On loopback the server
sends far faster than a modelled phone network lets the device read, so left to the defaults (Linux
autotuning, aiohttp reading 256 KiB per recv and pausing only past 128 KiB) every downloading device
would hold hundreds of KiB the phone never would: with these, each holds at most a few tens of KiB
(issue #12: 300 KiB per device for a 20,000-device fleet). Loopback still carries them at GB/s."""
DEVICE_RECEIVE_WINDOW = 32 * 1024
"""SO_RCVBUF of a device's sockets (the kernel doubles it)."""


def device_socket(addr: Any) -> socket.socket:
    """A device's socket (aiohttp's `socket_factory`): a small receive window, see DEVICE_RECEIVE_WINDOW."""
    family, kind, proto, _, _ = addr
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DEVICE_RECEIVE_WINDOW)
    return sock


AIOHTTP_READ_BUFFER = 2**16  # aiohttp's own read_bufsize, for the runner's shared session


def client_session(connector: aiohttp.BaseConnector, device: bool) -> aiohttp.ClientSession:
    """A session over `connector`: a device's (its small read buffer) or the runner's; aiohttp's own
    timeouts off (the device's Link keeps its read timeout)."""
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                 read_bufsize=DEVICE_READ_BUFFER if device else AIOHTTP_READ_BUFFER)


def keepalive_args(keepalive_s: float) -> dict[str, Any]:
    """aiohttp connector arguments for idle connections kept `keepalive_s` (<= 0: closed after each request)."""
    return {"keepalive_timeout": keepalive_s} if keepalive_s > 0 else {"force_close": True}


class SocketTransport:
    """Sessions over loopback TCP (and TLS when `ssl` says so)."""

    kind = "sockets"

    def __init__(self, ssl_context: ssl.SSLContext | bool = True) -> None:
        self.ssl = ssl_context

    def session(self, *, limit: int, keepalive_s: float, device: bool) -> aiohttp.ClientSession:
        """A device's own pool (`device`: device sockets and read buffer) or the runner's shared one."""
        extra: dict[str, Any] = {"socket_factory": device_socket} if device else {}
        connector = aiohttp.TCPConnector(limit=limit, ssl=self.ssl, **keepalive_args(keepalive_s), **extra)
        return client_session(connector, device)
