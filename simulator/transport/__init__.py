"""How clients reach the server: sockets (real time) or memory pipes (virtual time).

A `Transport` makes aiohttp sessions; the device engine, its Link and the runner's admin calls take
whatever session they are given, so they never know which transport carries their bytes.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

from .memory import MemoryTransport
from .sockets import DEVICE_READ_BUFFER, SocketTransport


class Transport(Protocol):
    kind: str

    def session(self, *, limit: int, keepalive_s: float, device: bool) -> aiohttp.ClientSession:
        """A client session of at most `limit` connections, idle ones kept `keepalive_s` seconds of
        the loop's time (<= 0: none kept); `device`: a device's own pool (its small read buffer)."""
        ...


__all__ = ["DEVICE_READ_BUFFER", "MemoryTransport", "SocketTransport", "Transport"]
