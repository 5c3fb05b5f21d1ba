"""Named network presets: plain data a scenario refers to by name.

| preset    | latency_ms | jitter_ms | down_kbps | up_kbps   | loss  |
|-----------|-----------:|----------:|----------:|----------:|------:|
| wifi      |         20 |         5 |    50 000 |    20 000 | 0     |
| 4g        |         50 |        15 |    20 000 |     8 000 | 0.001 |
| 3g        |        150 |        50 |     2 000 |       750 | 0.005 |
| 2g        |        400 |       100 |       100 |        50 | 0.01  |
| edge      |        300 |        80 |       240 |       120 | 0.01  |
| satellite |        650 |        50 |    10 000 |     2 000 | 0.005 |
| loopback  |          0 |         0 | unlimited | unlimited | 0     |

Units: latency_ms is the round-trip time in milliseconds added once before each request (its mean);
jitter_ms is that delay's standard deviation in milliseconds; down_kbps / up_kbps are kilobits per
second (1 kbps = 1000 bits/s) from server to device and device to server, None meaning unlimited;
loss is the probability in [0, 1] that a request fails with a network error before it is sent.

The figures are typical rather than measured on one network: in line with commonly published
values such as Chrome DevTools / WebPageTest throttling profiles (3g ~ 1.6-2 Mbps down, 750 kbps up,
150 ms and more round trip), operator and OpenSignal reports for 4g, GSM/GPRS and EDGE figures for
2g and edge, and the ~600 ms round trip of a geostationary satellite link.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NetworkPreset:
    """One row of the table above; see the module docstring for units."""

    latency_ms: float
    jitter_ms: float
    down_kbps: float | None
    up_kbps: float | None
    loss: float


PRESETS: dict[str, NetworkPreset] = {
    "wifi": NetworkPreset(latency_ms=20, jitter_ms=5, down_kbps=50_000, up_kbps=20_000, loss=0.0),
    "4g": NetworkPreset(latency_ms=50, jitter_ms=15, down_kbps=20_000, up_kbps=8_000, loss=0.001),
    "3g": NetworkPreset(latency_ms=150, jitter_ms=50, down_kbps=2_000, up_kbps=750, loss=0.005),
    "2g": NetworkPreset(latency_ms=400, jitter_ms=100, down_kbps=100, up_kbps=50, loss=0.01),
    "edge": NetworkPreset(latency_ms=300, jitter_ms=80, down_kbps=240, up_kbps=120, loss=0.01),
    "satellite": NetworkPreset(latency_ms=650, jitter_ms=50, down_kbps=10_000, up_kbps=2_000, loss=0.005),
    "loopback": NetworkPreset(latency_ms=0, jitter_ms=0, down_kbps=None, up_kbps=None, loss=0.0),
}
