"""The per-device network model: which latency, loss and bandwidth one device's requests get, and
the device's modelled TCP/TLS connections (set-up, wire bytes, slow start, keep-alive)."""

from __future__ import annotations

import numpy as np

from .faults import Bandwidth, Connection, Connections, Latency, Loss, Tcp
from .faults.connection import REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES
from .presets import PRESETS, NetworkPreset


class NetworkModel:
    """Draws one device's network conditions from its own random generator.

    latency_ms / jitter_ms: round-trip delay before each request, mean and standard deviation in ms.
    down_kbps / up_kbps: bandwidth in kilobits per second, None for unlimited.
    loss: probability in [0, 1] that a request fails before it is sent.
    connection: the device's connection settings (TLS, keep-alive; default TLS on, 60 s).
    rng: the device's generator, seeded from the scenario by the caller, so runs are reproducible.

    `connections` is the state of the device's modelled connections (faults/connection.py), kept
    here from the times the link gives (the device's lived time for the keep-alive, real time for
    slow start), so a new model (another network) starts new connections.
    """

    __slots__ = ("name", "latency", "loss", "down", "up", "rng", "connection", "connections")

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        down_kbps: float | None = None,
        up_kbps: float | None = None,
        loss: float = 0.0,
        name: str = "custom",
        connection: Connection | None = None,
    ) -> None:
        self.name = name
        self.rng = rng
        self.latency = Latency(latency_ms, jitter_ms)
        self.loss = Loss(loss)
        self.down: Bandwidth | None = None if down_kbps is None else Bandwidth(down_kbps)
        self.up: Bandwidth | None = None if up_kbps is None else Bandwidth(up_kbps)
        self.connection = connection or _DEFAULT_CONNECTION
        self.connections = Connections()

    @classmethod
    def from_preset(cls, name: str, rng: np.random.Generator, preset: NetworkPreset | None = None,
                    connection: Connection | None = None) -> NetworkModel:
        """The model for a named preset (see `presets.PRESETS`), or for `preset` when given (a
        scenario's own network under that name); unknown names raise ValueError."""
        preset = preset or PRESETS.get(name)
        if preset is None:
            allowed = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown network preset {name!r}; allowed: {allowed}")
        return cls(
            rng,
            latency_ms=preset.latency_ms,
            jitter_ms=preset.jitter_ms,
            down_kbps=preset.down_kbps,
            up_kbps=preset.up_kbps,
            loss=preset.loss,
            name=name,
            connection=connection,
        )

    def draw_latency_s(self) -> float:
        """The delay in real seconds to add before the next request (>= 0)."""
        return self.latency.delay_s(self.rng)

    def draw_lost(self) -> bool:
        """Whether the next request is lost."""
        return self.loss.fails(self.rng)

    def open(self, lived_s: float, real_s: float, rtt_s: float) -> tuple[Tcp, float]:
        """The modelled connection for a request starting now (the device's lived time `lived_s`,
        real `real_s`) whose round trip is `rtt_s`, and the seconds its set-up costs (0 if kept alive)."""
        tcp = self.connections.take(self.connection, lived_s, real_s, rtt_s)
        return tcp, self.connection.setup_s(rtt_s) if tcp.fresh else 0.0

    def keeps(self, lived_s: float) -> bool:
        """Whether a request starting at lived time `lived_s` would find a kept-alive connection."""
        return self.connections.kept(self.connection, lived_s)

    def upload_s(self, tcp: Tcp, rtt_s: float, nbytes: int) -> float:
        """Seconds until the request's headers and first `nbytes` body bytes are up on `tcp`."""
        return self.connection.leg_s(self.up, tcp.up, rtt_s, REQUEST_HEADER_BYTES + nbytes)

    def download_s(self, tcp: Tcp, rtt_s: float, nbytes: int) -> float:
        """Seconds from the answer's first byte until its headers and first `nbytes` body bytes are in."""
        return self.connection.leg_s(self.down, tcp.down, rtt_s, RESPONSE_HEADER_BYTES + nbytes)

    def close(self, tcp: Tcp, lived_s: float, real_s: float, bytes_up: int, bytes_down: int) -> None:
        """The request on `tcp` succeeded with these body bytes: the connection is idle from now
        (lived time `lived_s`, real `real_s`)."""
        tcp.carried(REQUEST_HEADER_BYTES + bytes_up, RESPONSE_HEADER_BYTES + bytes_down)
        self.connections.give_back(tcp, lived_s, real_s)

    def drop_connections(self) -> None:
        """Every modelled connection ends (airplane mode)."""
        self.connections.drop()

    def __repr__(self) -> str:
        return (
            f"NetworkModel({self.name!r}, latency={self.latency}, loss={self.loss.probability}, "
            f"down={self.down}, up={self.up}, {self.connection})"
        )


_DEFAULT_CONNECTION = Connection()
