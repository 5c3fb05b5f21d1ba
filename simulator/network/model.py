"""The per-device network model: which latency, loss and bandwidth one device's requests get."""

from __future__ import annotations

import numpy as np

from .faults import Bandwidth, Latency, Loss
from .presets import PRESETS, NetworkPreset


class NetworkModel:
    """Draws one device's network conditions from its own random generator.

    latency_ms / jitter_ms: round-trip delay before each request, mean and standard deviation in ms.
    down_kbps / up_kbps: bandwidth in kilobits per second, None for unlimited.
    loss: probability in [0, 1] that a request fails before it is sent.
    rng: the device's generator, seeded from the scenario by the caller, so runs are reproducible.
    """

    __slots__ = ("name", "latency", "loss", "down", "up", "rng")

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
    ) -> None:
        self.name = name
        self.rng = rng
        self.latency = Latency(latency_ms, jitter_ms)
        self.loss = Loss(loss)
        self.down: Bandwidth | None = None if down_kbps is None else Bandwidth(down_kbps)
        self.up: Bandwidth | None = None if up_kbps is None else Bandwidth(up_kbps)

    @classmethod
    def from_preset(cls, name: str, rng: np.random.Generator, preset: NetworkPreset | None = None) -> NetworkModel:
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
        )

    def draw_latency_s(self) -> float:
        """The delay in real seconds to add before the next request (>= 0)."""
        return self.latency.delay_s(self.rng)

    def draw_lost(self) -> bool:
        """Whether the next request is lost."""
        return self.loss.fails(self.rng)

    def __repr__(self) -> str:
        return (
            f"NetworkModel({self.name!r}, latency={self.latency}, loss={self.loss.probability}, "
            f"down={self.down}, up={self.up})"
        )
