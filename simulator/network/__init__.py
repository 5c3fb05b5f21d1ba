"""The per-device network model, applied in the device's HTTP transport.

`NetworkModel` says what a device's network is like (latency, jitter, bandwidth, loss; from a named
preset or explicit numbers); `Link` is one device's connection that applies it to every request and
models airplane mode. Faults live one per file in `faults/`; presets are plain data in `presets`.
"""

from __future__ import annotations

from .errors import AirplaneModeError, NetworkError
from .link import Link, Response
from .model import NetworkModel
from .presets import PRESETS, NetworkPreset

__all__ = [
    "PRESETS",
    "AirplaneModeError",
    "Link",
    "NetworkError",
    "NetworkModel",
    "NetworkPreset",
    "Response",
]
