"""Connection: what a real TCP (and TLS) connection adds to latency and bandwidth, in closed form.

Calibrated against a real Linux TCP stack on the same links (docs: /work/shared/NETWORK_FIDELITY.md,
reproduced cell by cell by tests/test_network_fidelity.py). Four costs, none of them a packet
simulation:

- Bytes on the wire: a full segment carries MSS_BYTES (1,448) of payload in SEGMENT_WIRE_BYTES
  (1,514) on the link (20 B IP + 32 B TCP with timestamps + 14 B link framing), so payload moves at
  the nominal rate x 1448/1514 (4.6% slower); TLS adds its record framing (22 B per 16 KiB record).
- HTTP headers: REQUEST_HEADER_BYTES up and RESPONSE_HEADER_BYTES down per request, counted like
  body bytes (they are ahead of the body in the same stream).
- Setup: a new connection costs 1 round trip (TCP handshake), plus 1 with TLS 1.3.
- Slow start: a new connection sends INITIAL_WINDOW_SEGMENTS (10 segments, 14.5 KB) in its first
  round trip and doubles its window each round trip; while a window is sent faster than its
  acknowledgements come back, the sender waits. `stall_s` is that wait in closed form (the classic
  slow-start latency model with an initial window of w segments).

`Connection` holds a device's settings (TLS, keep-alive); `Tcp` is one modelled connection's state
(its two windows and when it went idle); `Connections` is a device's set of them, tracked from the
clock alone: which request gets a new connection depends only on the times the model is given (the
device's lived time for the keep-alive, real time for slow start after idle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import register
from .bandwidth import Bandwidth

MSS_BYTES = 1448
"""TCP payload bytes per full segment (1,500-byte MTU - 20 B IP - 32 B TCP with timestamps)."""
SEGMENT_WIRE_BYTES = 1514
"""Link bytes one full segment takes: payload + 52 B TCP/IP headers + 14 B link framing."""
WIRE_FACTOR = SEGMENT_WIRE_BYTES / MSS_BYTES
"""Wire bytes per payload byte: goodput = nominal rate x 1448/1514, the reference's calibration."""
TLS_RECORD_BYTES = 16_384
TLS_RECORD_OVERHEAD_BYTES = 22
"""TLS 1.3 framing per full record: 5 B header + 1 B content type + 16 B AEAD tag."""
TLS_FACTOR = 1 + TLS_RECORD_OVERHEAD_BYTES / TLS_RECORD_BYTES
INITIAL_WINDOW_SEGMENTS = 10
"""A new connection's congestion window (RFC 6928, Linux's default): 14,480 payload bytes."""
REQUEST_HEADER_BYTES = 500
RESPONSE_HEADER_BYTES = 500
"""HTTP header bytes of one request and of its response (about 0.5 KB each way)."""
RTO_FLOOR_S = 0.2
"""Linux's minimum retransmission timeout: the window of a connection idle for longer than its
RTO (round trip + this) is halved per RTO idle, down to the initial window (slow start after idle)."""
DEFAULT_KEEPALIVE_S = 60.0
"""Seconds an idle connection survives by default, on the device's lived time (a wait counts its
scenario length, the device's own work its real length): carrier NATs close idle TCP flows after
30 s to a few minutes, so a phone's connection rarely outlives the gap between two sync cycles
(docs/scenarios.md, Connections)."""
POOL_CONNECTIONS = 5
"""Idle modelled connections a device keeps at most (its real pool's limit, OkHttp's default)."""


@register("connection")
@dataclass(frozen=True, slots=True)
class Connection:
    """A device's connection settings.

    tls: whether requests go over TLS 1.3 (one more round trip to set up a connection, and record
    framing on every byte); Dataverse is HTTPS only, so on by default.
    keepalive_s: seconds an idle connection survives (>= 0), on the device's lived time: waits (sync
    intervals, backoff) count their scenario length, the device's own work its real length, as a
    phone lives them; 0 opens a new connection for every request.
    """

    tls: bool = True
    keepalive_s: float = DEFAULT_KEEPALIVE_S

    def __post_init__(self) -> None:
        if not self.keepalive_s >= 0:
            raise ValueError(f"connection keepalive_s must be >= 0, got {self.keepalive_s}")

    def setup_s(self, rtt_s: float) -> float:
        """Seconds a new connection costs before its first request: TCP's handshake, then TLS 1.3's."""
        return 2 * rtt_s if self.tls else rtt_s

    def wire_bytes(self, nbytes: float) -> float:
        """Link bytes that carry `nbytes` bytes of HTTP (headers and body)."""
        return nbytes * (WIRE_FACTOR * TLS_FACTOR if self.tls else WIRE_FACTOR)

    def leg_s(self, bandwidth: Bandwidth | None, window: float, rtt_s: float, nbytes: float) -> float:
        """Seconds from the first byte of one direction of an exchange until its first `nbytes`
        bytes (headers included) are through: wire time at the bandwidth plus slow start's waits
        for a connection whose window is `window` segments. The one formula of the model: the link
        paces transfers by it, the advisor sums it."""
        if bandwidth is None:
            return stall_s(window, nbytes, rtt_s, 0.0)
        wire_s = bandwidth.seconds_for(self.wire_bytes(nbytes))
        return wire_s + stall_s(window, nbytes, rtt_s, bandwidth.seconds_for(SEGMENT_WIRE_BYTES))

    def exchange_s(self, tcp: Tcp, rtt_s: float, down: Bandwidth | None, up: Bandwidth | None,
                   up_bytes: float, down_bytes: float) -> float:
        """Seconds one request takes on `tcp` without the server's time: set-up if the connection is
        new, the round trip, the request (headers + `up_bytes` of body) up and the answer (headers
        + `down_bytes`) down; then the connection has carried it (`Tcp.carried`). The link spends the
        same seconds, pacing the legs chunk by chunk."""
        up_total, down_total = REQUEST_HEADER_BYTES + up_bytes, RESPONSE_HEADER_BYTES + down_bytes
        seconds = (self.setup_s(rtt_s) if tcp.fresh else 0.0) + rtt_s
        seconds += self.leg_s(up, tcp.up, rtt_s, up_total) + self.leg_s(down, tcp.down, rtt_s, down_total)
        tcp.carried(up_total, down_total)
        return seconds

    def requests_s(self, tcp: Tcp, rtt_s: float, down: Bandwidth | None, up: Bandwidth | None,
                   count: float, down_bytes: float, up_bytes: float = 0.0) -> float:
        """Seconds `count` alike requests take one after another on `tcp` (count may be fractional:
        an expectation). Each is `exchange_s`; once one needs no set-up and no slow-start wait, every
        later one costs the same (windows only grow), so the rest is a product: cheap for any count."""
        total, left = 0.0, count
        up_total, down_total = REQUEST_HEADER_BYTES + up_bytes, RESPONSE_HEADER_BYTES + down_bytes
        while left > 0:
            steady = not tcp.fresh and _no_stall(tcp.up, up_total, rtt_s, up) and \
                _no_stall(tcp.down, down_total, rtt_s, down)
            seconds = self.exchange_s(tcp, rtt_s, down, up, up_bytes, down_bytes)
            if steady:
                return total + left * seconds
            share = min(1.0, left)
            total, left = total + share * seconds, left - share
        return total


def stall_s(window: float, nbytes: float, rtt_s: float, segment_s: float) -> float:
    """Seconds slow start keeps the sender waiting before the first `nbytes` payload bytes are sent.

    The sender sends windows of w, 2w, 4w ... segments (w = `window`), each once the first
    acknowledgement of the one before is back, `segment_s + rtt_s` after that window started
    (`segment_s`: one full segment's wire time; 0 for unlimited bandwidth). Window k (of w 2^(k-1)
    segments) leaves the sender idle for segment_s + rtt_s - w 2^(k-1) segment_s when that is > 0.
    The n = ceil(nbytes / MSS) segments need K windows, w (2^K - 1) >= n; the first Q windows are
    short of the pipe, w 2^(Q-1) < 1 + rtt_s / segment_s; the waits after the first P = min(K-1, Q)
    windows sum to P (segment_s + rtt_s) - segment_s w (2^P - 1).
    """
    segments = math.ceil(nbytes / MSS_BYTES)
    if segments <= window or rtt_s <= 0:
        return 0.0
    windows = math.ceil(math.log2(segments / window + 1))
    stalls = windows - 1
    if segment_s > 0:
        pipe = 1 + rtt_s / segment_s  # segments in flight that keep the link busy
        stalls = min(stalls, math.ceil(math.log2(pipe / window)) if pipe > window else 0)
    if stalls <= 0:
        return 0.0
    return stalls * (segment_s + rtt_s) - segment_s * window * (2**stalls - 1)


def _no_stall(window: float, nbytes: float, rtt_s: float, bandwidth: Bandwidth | None) -> bool:
    segment_s = 0.0 if bandwidth is None else bandwidth.seconds_for(SEGMENT_WIRE_BYTES)
    return stall_s(window, nbytes, rtt_s, segment_s) == 0.0


def grown(window: float, nbytes: float) -> float:
    """The window after `nbytes` were carried in slow start: one segment more per segment
    acknowledged, but not beyond twice what was in flight (Linux grows only a window in use)."""
    segments = math.ceil(nbytes / MSS_BYTES)
    return min(window + segments, max(window, 2 * segments))


class Tcp:
    """One modelled connection: its congestion windows in segments (`down`: server to device, `up`:
    device to server), whether it has carried a request yet (`fresh`: set-up still to pay), and when
    it went idle (`idle_at_s` on the device's lived time, for the keep-alive; `idle_at_real_s` in
    real seconds, for slow start after idle)."""

    __slots__ = ("down", "up", "fresh", "idle_at_s", "idle_at_real_s", "epoch")

    def __init__(self, epoch: int = 0) -> None:
        self.down = self.up = float(INITIAL_WINDOW_SEGMENTS)
        self.fresh = True
        self.idle_at_s = self.idle_at_real_s = 0.0
        self.epoch = epoch

    def carried(self, up_bytes: float, down_bytes: float) -> None:
        """The connection carried one exchange: it is set up and its windows have grown."""
        self.fresh = False
        self.up, self.down = grown(self.up, up_bytes), grown(self.down, down_bytes)

    def rested(self, idle_real_s: float, rtt_s: float) -> None:
        """Slow start after idle: the windows halve per RTO (round trip + RTO_FLOOR_S) the sender
        was idle, counting the round trip the next request takes to reach it, down to the initial
        window."""
        halvings = int((idle_real_s + rtt_s) // (rtt_s + RTO_FLOOR_S))
        if halvings > 0:
            scale = 2.0 ** -min(halvings, 64)
            self.up = max(float(INITIAL_WINDOW_SEGMENTS), self.up * scale)
            self.down = max(float(INITIAL_WINDOW_SEGMENTS), self.down * scale)


class Connections:
    """One device's modelled connections, decided from the clock alone.

    Each request in flight holds one connection. A request takes the most recently idle one if it
    has been idle for at most `keepalive_s` seconds of the device's lived time (its windows rested
    for the real seconds it was idle), else it opens a new one (older idle ones are then gone too);
    so concurrent requests use as many connections as there are of them. A connection goes back
    idle when its request succeeds; a failed or cut request's connection is not reused. `drop`
    (airplane mode) ends every connection, including those of requests in flight. At most
    POOL_CONNECTIONS stay idle. `opened` counts the new connections (set-ups paid).
    """

    __slots__ = ("idle", "epoch", "opened")

    def __init__(self) -> None:
        self.idle: list[Tcp] = []
        self.epoch = 0
        self.opened = 0

    def kept(self, settings: Connection, lived_s: float) -> bool:
        """Whether a request starting at lived time `lived_s` would find an idle connection alive."""
        return bool(self.idle) and settings.keepalive_s > 0 and \
            lived_s - self.idle[-1].idle_at_s <= settings.keepalive_s

    def take(self, settings: Connection, lived_s: float, real_s: float, rtt_s: float) -> Tcp:
        """The connection for a request starting at lived time `lived_s`, real time `real_s`."""
        if self.kept(settings, lived_s):
            tcp = self.idle.pop()
            tcp.rested(real_s - tcp.idle_at_real_s, rtt_s)
            return tcp
        self.idle.clear()  # idle longer than the keep-alive; the others even longer
        self.opened += 1
        return Tcp(self.epoch)

    def give_back(self, tcp: Tcp, lived_s: float, real_s: float) -> None:
        """The request on `tcp` is done and the connection idle, unless dropped meanwhile."""
        if tcp.epoch != self.epoch:
            return
        tcp.idle_at_s, tcp.idle_at_real_s = lived_s, real_s
        self.idle.append(tcp)
        if len(self.idle) > POOL_CONNECTIONS:
            del self.idle[0]

    def expire(self) -> None:
        """The idle connections end (the device waits longer than they live); those of requests in
        flight stay."""
        self.idle.clear()

    def drop(self) -> None:
        """Every connection ends (airplane mode): the next request opens a new one."""
        self.epoch += 1
        self.idle.clear()
