"""Tracked pages: change-tracked first-sync pages of ~1 KB rows, syncsim versus bare aiohttp.

A child process seeds and serves one table of ~1 KB rows. One user with org read walks an initial
tracked read (Prefer odata.maxpagesize=5000) with a plain aiohttp client, following the nextLinks;
the client reads each page whole and takes the nextLink from its tail without parsing the JSON, so
the server is what is measured. The reference is a bare aiohttp handler in another child process
answering the same page bytes, captured from the first syncsim walk (whose cold figure, rows
rendered for the first time, is reported on its own). Rounds alternate the two sides.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import aiohttp
import orjson
from yarl import URL

from bench.common import (
    API,
    Figure,
    deadline_in,
    headers,
    info,
    interleave,
    relative,
    user_name,
    visits_scenario,
)
from bench.procs import ChildServer
from simulator.runner import Admin

NAME = "pages"
TARGET_RATIO = 0.50
NEXT = b'"@odata.nextLink":"'


@dataclass(frozen=True, slots=True)
class Config:
    rows: int
    rounds: int
    budget_s: float  # real seconds for all timed rounds


FULL = Config(rows=50_000, rounds=7, budget_s=90)
QUICK = Config(rows=5_000, rounds=2, budget_s=20)


@dataclass(slots=True)
class Walk:
    seconds: float
    bytes: int
    pages: int


async def walk(session: aiohttp.ClientSession, url: str, hdrs: dict[str, str], max_pages: int,
               capture: dict[str, bytes] | None = None, timeout_s: float = 60) -> Walk:
    """GET url and every nextLink after it (at most max_pages); capture keeps raw path -> body."""
    total = pages = 0
    start = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        while url and pages < max_pages:
            async with session.get(url, headers=hdrs) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: HTTP {resp.status} {body[:300]!r}")
            if capture is not None:
                capture[URL(url).raw_path_qs] = body
            total += len(body)
            pages += 1
            url = next_link(body)
    return Walk(time.perf_counter() - start, total, pages)


def next_link(body: bytes) -> str:
    """The page's @odata.nextLink ("" on the last page), found in the tail without parsing."""
    at = body.rfind(NEXT, max(0, len(body) - 4096))
    if at < 0:
        return ""
    start = at + len(NEXT)
    return body[start : body.index(b'"', start)].decode()


def count_rows(pages: dict[str, bytes]) -> int:
    return sum(len(orjson.loads(body)["value"]) for body in pages.values())


async def run_async(cfg: Config) -> list[Figure]:
    scenario = visits_scenario("bench_pages", rows=cfg.rows, users=1)
    max_pages = cfg.rows // 1000 + 10
    async with ChildServer("syncsim", scenario) as ours, aiohttp.ClientSession() as session:
        token = await Admin(session, ours.base_url, ours.admin_key).token(user_name(1))
        hdrs = headers(token, tracked=True)
        ours_url = f"{ours.base_url}{API}/visits"
        captured: dict[str, bytes] = {}
        cold = await walk(session, ours_url, hdrs, max_pages, captured)
        rows = count_rows(captured)
        async with ChildServer("bare", (captured, ours.base_url)) as bare:
            bare_url = f"{bare.base_url}{API}/visits"
            await walk(session, bare_url, hdrs, max_pages)  # warm the bare side's connection too
            cpu: dict[str, list[float]] = {"ours": [], "bare": []}
            sizes: list[int] = []

            sizes_used = iter(range(4999, 4000, -1))

            async def side(server: ChildServer, url: str, key: str) -> float:
                # syncsim shares assembled pages between users with the same view; a fresh page size
                # per walk keeps every page uncached, so this measures building pages from encoded rows
                h = hdrs if key == "bare" else {**hdrs, "Prefer": f"odata.track-changes,odata.maxpagesize={next(sizes_used)}"}
                c0 = server.cpu_s()
                w = await walk(session, url, h, max_pages)
                cpu[key].append((server.cpu_s() - c0) / w.pages)
                sizes.append(w.bytes)
                return rows / w.seconds

            r = await interleave(lambda: side(ours, ours_url, "ours"), lambda: side(bare, bare_url, "bare"),
                                 cfg.rounds, deadline_in(cfg.budget_s))
            shared = [rows / (await walk(session, ours_url, hdrs, max_pages)).seconds for _ in range(3)][1:]
    mb_per_row = statistics.median(sizes) / rows / 1e6
    cpu_ours, cpu_bare = statistics.median(cpu["ours"]), statistics.median(cpu["bare"])
    pages = len(captured)
    return [
        relative(NAME, "tracked pages, warm (uncached pages)", r.ours_median, "rows/s", r.ratio, TARGET_RATIO, r.bare_median,
                 detail=f"{rows:,} rows of ~{mb_per_row * 1e6:,.0f} B in {pages} pages; "
                        f"{r.ours_median * mb_per_row:.1f} MB/s vs bare {r.bare_median * mb_per_row:.1f} MB/s; "
                        f"{len(r.ours)} rounds, {r.spread()}",
                 rounds_ours=r.ours, rounds_bare=r.bare, rows=rows, pages=pages),
        info(NAME, "tracked pages, shared by users with one view", statistics.median(shared), "rows/s",
             detail="the same walk again: non-final pages come from the server's page cache"),
        info(NAME, "tracked pages, MB/s", r.ours_median * mb_per_row, "MB/s",
             detail=f"bare {r.bare_median * mb_per_row:.1f} MB/s"),
        info(NAME, "tracked pages, cold first walk", rows / cold.seconds, "rows/s",
             detail="first walk after seeding: every row encoded for the first time", seconds=cold.seconds),
        info(NAME, "server CPU per 5,000-row page", cpu_ours * 1000, "ms",
             detail=f"bare {cpu_bare * 1000:.2f} ms; bare/ours = {cpu_bare / cpu_ours:.2f}",
             bare_ms=cpu_bare * 1000),
    ]


def figures(quick: bool = False) -> list[Figure]:
    return asyncio.run(run_async(QUICK if quick else FULL))
