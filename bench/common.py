"""What the benchmarks share: the figures they report, interleaved ratio rounds, scenarios, deadlines.

Speed is only ever printed, never asserted. The machine is shared and noisy, so every comparison is
a ratio measured in the same run: the two sides alternate round by round (A B, B A, A B ...), each
round gives one ratio, and the median of those is the figure. Every load loop has a fixed count and
a deadline in real seconds; a loop cut by its deadline says so in the figure's detail.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.scenario import Scenario, parse_scenario

ROW_BYTES = 1000  # ~1 KB rows, as in the seed benchmark
PAGE_SIZE = 5000  # Prefer: odata.maxpagesize
API = "/api/data/v9.2"
# Service protection would throttle a load generator; the benchmarks measure speed, not limits.
NO_LIMITS: dict[str, Any] = {"limits": {"requests": 1_000_000_000, "execution_time_s": 1e12,
                                        "concurrent": 1_000_000, "window_s": 300}}


@dataclass(slots=True)
class Figure:
    """One line of the final table.

    value is in `unit`. ratio is the measured side over its reference: syncsim over bare for
    comparisons, the value over the target for absolute targets. ok is None for figures without a
    target (printed as "-").
    """

    bench: str
    name: str
    value: float
    unit: str
    target: str
    ratio: float | None
    ok: bool | None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "BELOW")


def absolute(bench: str, name: str, value: float, unit: str, limit: float, *, at_most: bool = False,
             detail: str = "", **data: Any) -> Figure:
    """A figure against a fixed target: value >= limit (or <= limit when at_most)."""
    ratio = value / limit if limit else float("inf")
    ok = value <= limit if at_most else value >= limit
    target = f"{'<=' if at_most else '>='} {fmt(limit)} {unit}"
    return Figure(bench, name, value, unit, target, ratio, ok, detail, dict(data))


def relative(bench: str, name: str, value: float, unit: str, ratio: float, min_ratio: float, bare: float,
             *, detail: str = "", **data: Any) -> Figure:
    """A figure compared with a bare aiohttp reference measured in the same run."""
    target = f">= {min_ratio:.0%} of bare ({fmt(bare)} {unit})"
    return Figure(bench, name, value, unit, target, ratio, ratio >= min_ratio, detail,
                  {"bare": bare, "min_ratio": min_ratio, **data})


def info(bench: str, name: str, value: float, unit: str, *, detail: str = "", **data: Any) -> Figure:
    """A figure without a target."""
    return Figure(bench, name, value, unit, "-", None, None, detail, dict(data))


def fmt(x: float) -> str:
    """Numbers as people read them: 1,234,567 / 12.3 / 0.123."""
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


# --- interleaved rounds --------------------------------------------------------------------------
@dataclass(slots=True)
class Rounds:
    """Rates of both sides per round, and their per-round ratios (ours / bare)."""

    ours: list[float]
    bare: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours, self.bare, strict=True) if b > 0]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 0.0

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours) if self.ours else 0.0

    @property
    def bare_median(self) -> float:
        return statistics.median(self.bare) if self.bare else 0.0

    def spread(self) -> str:
        """The per-round ratios, so a reader sees the noise."""
        return "ratios " + " ".join(f"{r:.2f}" for r in self.ratios)


Side = Callable[[], Awaitable[float]]


async def interleave(ours: Side, bare: Side, rounds: int, deadline: float) -> Rounds:
    """Run both sides `rounds` times, alternating which goes first; stop early at `deadline`
    (time.monotonic()), keeping at least one complete round. Each side returns a rate."""
    out = Rounds([], [])
    for i in range(rounds):
        if i > 0 and time.monotonic() > deadline:
            break
        if i % 2 == 0:
            a = await ours()
            b = await bare()
        else:
            b = await bare()
            a = await ours()
        out.ours.append(a)
        out.bare.append(b)
    return out


def deadline_in(seconds: float) -> float:
    """A deadline `seconds` real seconds from now, on time.monotonic()."""
    return time.monotonic() + seconds


# --- scenarios -----------------------------------------------------------------------------------
def visit_columns() -> list[dict[str, Any]]:
    """The plain visit columns every benchmark shares (seed_bench adds more, a lookup and a file)."""
    return [
        {"name": "subject", "type": "text", "faker": "catch_phrase", "max_length": 100},
        {"name": "contact", "type": "text", "faker": "name"},
        {"name": "street", "type": "text", "faker": "address"},
        {"name": "duration", "type": "integer", "min": 5, "max": 480},
        {"name": "odometer", "type": "integer", "min": 0, "max": 300_000},
        {"name": "amount", "type": "decimal", "min": 0, "max": 10_000},
        {"name": "scheduled", "type": "datetime"},
        {"name": "status", "type": "choice", "options": {"open": 1, "done": 2, "cancelled": 3}},
    ]


def visits_scenario(name: str, *, rows: int, users: int, per_user: bool = False, seed: int = 42) -> Scenario:
    """One `visit` table of ~1 KB rows and one `tech` user class (org read, loopback network).

    per_user: rows are owned by the techs and each device's profile takes only its own (filter
    owner), so every user gets about rows / users rows; otherwise every user's profile is the whole
    table.
    """
    table: dict[str, Any] = {"logical_name": "visit", "rows": rows, "row_bytes": ROW_BYTES,
                             "columns": visit_columns()}
    if per_user:
        table["owned_by"] = ["tech"]
    profile = [{"table": "visit", "filter": "owner" if per_user else "all", "files": False}]
    return parse_scenario({
        "name": name, "seed": seed, "server": NO_LIMITS, "max_devices": max(20_000, users),
        "tables": [table],
        "user_classes": [{"name": "tech", "count": users, "profile": profile, "networks": {"loopback": 1.0},
                          "privileges": {"visit": {"read": "org", "write": "org", "delete": "org"}}}],
    })


def user_name(n: int) -> str:
    """The n-th (1-based) tech user, as the seed names them."""
    return f"tech-{n:04d}"


def headers(token: str, *, tracked: bool = False, device: str | None = None) -> dict[str, str]:
    """Web API request headers for a bearer token; tracked adds odata.track-changes."""
    prefer = f"odata.maxpagesize={PAGE_SIZE}" + (",odata.track-changes" if tracked else "")
    out = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0",
           "Prefer": prefer}
    if device is not None:
        out["x-syncsim-device-id"] = device
    return out
