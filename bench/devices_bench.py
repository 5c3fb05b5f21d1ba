"""Device first sync end to end: N devices doing FIRST_SYNC at once, server and devices in one process.

As `syncsim run` composes them: `start_server` on a RealClock, one shared aiohttp session, devices
built with the runner's `make_device` on the loopback network preset (no shaping). Each device's
offline profile holds its own ~rows_per_device rows of ~1 KB (filter owner). Figure: rows per
second over the whole fleet, from the first token request to the last device's finish.

The reference, in the same process with the same concurrency: a bare aiohttp server answering the
same pre-encoded pages (captured from syncsim once per user), each client doing GET + orjson.loads
per page. The first device round runs on a cold server (rows encoded for the first time) and is
reported on its own; then device and bare rounds alternate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

from bench.bare import start_bare
from bench.common import (
    API,
    Figure,
    absolute,
    deadline_in,
    headers,
    info,
    interleave,
    relative,
    visits_scenario,
)
from bench.pages_bench import walk
from simulator.clock import RealClock
from simulator.events import Events
from simulator.fleet import FleetEntry, build_fleet
from simulator.runner import Admin, make_device, raise_fd_limit
from simulator.server.serve import start_server

NAME = "devices"
TARGET_ROWS_S = 100_000.0
TARGET_RATIO = 0.40


@dataclass(frozen=True, slots=True)
class Config:
    devices: int
    rows_per_device: int
    rounds: int
    budget_s: float


FULL = Config(devices=20, rows_per_device=5_000, rounds=7, budget_s=120)
QUICK = Config(devices=4, rows_per_device=1_000, rounds=2, budget_s=30)
ROUND_TIMEOUT_S = 120.0


class Fleet:
    """Builds fresh devices for every round (a first sync needs devices that hold nothing)."""

    def __init__(self, entries: list[FleetEntry], clock: RealClock, session: aiohttp.ClientSession,
                 admin: Admin, base_url: str) -> None:
        self.entries, self.clock, self.session, self.admin, self.base_url = entries, clock, session, admin, base_url

    async def first_sync(self) -> tuple[int, float]:
        """All devices' first syncs at once; (rows downloaded, seconds). Raises if one failed."""
        events, origin = Events(), self.clock.now()
        devices = [make_device(e, self.clock, self.session, self.admin, self.base_url, events, origin)
                   for e in self.entries]
        start = time.perf_counter()
        async with asyncio.timeout(ROUND_TIMEOUT_S):
            records = await asyncio.gather(*(d.sync_once() for d in devices))
        seconds = time.perf_counter() - start
        failed = [r for r in records if r.result != "success"]
        if failed:
            raise RuntimeError(f"{len(failed)} first syncs failed, e.g. {failed[0].error_code}")
        return sum(sum(r.rows_by_table.values()) for r in records), seconds


async def capture_pages(fleet: Fleet) -> list[list[bytes]]:
    """Each user's tracked-read pages, as its device gets them (device session, owner filter)."""
    out = []
    for entry in fleet.entries:
        token = await fleet.admin.token(entry.spec.user)
        got: dict[str, bytes] = {}
        hdrs = headers(token, tracked=True, device=entry.spec.name)
        await walk(fleet.session, f"{fleet.base_url}{API}/visits", hdrs, max_pages=1000, capture=got)
        out.append(list(got.values()))
    return out


async def bare_first_sync(session: aiohttp.ClientSession, base_url: str, pages: list[list[bytes]]) -> tuple[int, float]:
    """Every user's pages from the bare server at once, GET + orjson.loads each; (rows, seconds)."""

    async def client(user: int, count: int) -> int:
        rows = 0
        for page in range(count):
            async with session.get(f"{base_url}/u{user}/p{page}") as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"bare page u{user}/p{page}: HTTP {resp.status}")
            rows += len(orjson.loads(body)["value"])
        return rows

    start = time.perf_counter()
    async with asyncio.timeout(ROUND_TIMEOUT_S):
        rows = await asyncio.gather(*(client(u, len(p)) for u, p in enumerate(pages)))
    return sum(rows), time.perf_counter() - start


async def run_async(cfg: Config) -> list[Figure]:
    scenario = visits_scenario("bench_devices", rows=cfg.devices * cfg.rows_per_device, users=cfg.devices,
                               per_user=True)
    clock = RealClock(1.0)
    limit = raise_fd_limit()
    server = await start_server(scenario, clock=clock)
    try:
        connector = aiohttp.TCPConnector(limit=max(64, limit - 256))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
            fleet = Fleet(build_fleet(scenario), clock, session, Admin(session, server.base_url, server.admin_key),
                          server.base_url)
            cold_rows, cold_s = await fleet.first_sync()
            pages = await capture_pages(fleet)
            flat = {f"/u{u}/p{p}": body for u, user_pages in enumerate(pages) for p, body in enumerate(user_pages)}
            bare_runner, bare_url = await start_bare(flat)
            try:
                async def ours() -> float:
                    rows, seconds = await fleet.first_sync()
                    return rows / seconds

                async def bare() -> float:
                    rows, seconds = await bare_first_sync(session, bare_url, pages)
                    return rows / seconds

                r = await interleave(ours, bare, cfg.rounds, deadline_in(cfg.budget_s))
            finally:
                await bare_runner.cleanup()
    finally:
        await server.close()
    what = f"{cfg.devices} devices x ~{cold_rows // cfg.devices:,} rows of ~1 KB"
    return [
        absolute(NAME, "device first sync, warm", r.ours_median, "rows/s", TARGET_ROWS_S,
                 detail=f"{what}; {len(r.ours)} rounds: " + " ".join(f"{x:,.0f}" for x in r.ours),
                 rounds=r.ours),
        relative(NAME, "device first sync vs bare", r.ours_median, "rows/s", r.ratio, TARGET_RATIO, r.bare_median,
                 detail=f"bare: GET + orjson.loads of the same pages, same concurrency; {r.spread()}",
                 rounds_ours=r.ours, rounds_bare=r.bare),
        info(NAME, "device first sync, cold server", cold_rows / cold_s, "rows/s",
             detail=f"{what} on a server that has not encoded any row yet ({cold_s:.2f} s)", seconds=cold_s),
    ]


def figures(quick: bool = False) -> list[Figure]:
    return asyncio.run(run_async(QUICK if quick else FULL))
