"""Network faults, toxiproxy style: one file per fault, each a small frozen parameter dataclass with
one method, registered here by name so scenarios can refer to faults as plain strings.

Registered faults (name -> class, units in the field names):
    latency    Latency(mean_ms, jitter_ms).delay_s(rng) -> seconds to wait before a request
    bandwidth  Bandwidth(kbps).seconds_for(nbytes) -> seconds a transfer takes at that rate
    loss       Loss(probability).fails(rng) -> whether this request is lost
    connection Connection(tls, keepalive_s).leg_s(...) -> seconds a transfer takes on a real TCP
               connection (wire bytes, slow start); .setup_s(rtt_s) -> seconds a new one costs
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)

FAULTS: dict[str, type] = {}
"""Every fault class, by the name it was registered under."""


def register(name: str) -> Callable[[T], T]:
    """Class decorator: add the fault class to `FAULTS` under `name` (names must be unique)."""

    def add(cls: T) -> T:
        if name in FAULTS:
            raise ValueError(f"fault {name!r} is already registered by {FAULTS[name].__name__}")
        FAULTS[name] = cls
        return cls

    return add


# Imported after `register` exists: each module registers its fault on import.
from .bandwidth import Bandwidth, Throttle  # noqa: E402
from .connection import Connection, Connections, Tcp  # noqa: E402
from .latency import Latency  # noqa: E402
from .loss import Loss  # noqa: E402

__all__ = ["FAULTS", "Bandwidth", "Connection", "Connections", "Latency", "Loss", "Tcp", "Throttle", "register"]
