"""Empty delta: the request rate of a delta read with no changes, syncsim versus bare hello world.

A child process seeds and serves a small table; one device session (x-syncsim-device-id) makes the
initial tracked read to get a deltaLink, then a few concurrent clients GET that deltaLink a fixed
number of times: every answer is an empty page with a new deltaLink, which is what each device asks
every sync interval. The reference is a bare aiohttp hello-world handler in another child process,
hit by the same clients with the same headers. Rounds alternate the two sides.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import aiohttp
import orjson

from bench.bare import HELLO_PATH
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
from bench.pages_bench import walk
from bench.procs import ChildServer
from simulator.runner import Admin

NAME = "delta"
TARGET_RATIO = 0.60


@dataclass(frozen=True, slots=True)
class Config:
    requests: int  # per side per round
    clients: int
    rounds: int
    budget_s: float


FULL = Config(requests=2000, clients=4, rounds=9, budget_s=90)
QUICK = Config(requests=400, clients=4, rounds=2, budget_s=20)


async def hammer(session: aiohttp.ClientSession, url: str, hdrs: dict[str, str], cfg: Config,
                 timeout_s: float = 60) -> float:
    """cfg.requests GETs of url from cfg.clients concurrent clients; returns requests per second."""
    per_client = cfg.requests // cfg.clients

    async def client() -> None:
        for _ in range(per_client):
            async with session.get(url, headers=hdrs) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: HTTP {resp.status}")

    start = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(client() for _ in range(cfg.clients)))
    return per_client * cfg.clients / (time.perf_counter() - start)


async def delta_link(session: aiohttp.ClientSession, base_url: str, hdrs: dict[str, str]) -> str:
    """Walk the initial tracked read; the deltaLink of its last page."""
    pages: dict[str, bytes] = {}
    await walk(session, f"{base_url}{API}/visits", hdrs, max_pages=100, capture=pages)
    return str(orjson.loads(list(pages.values())[-1])["@odata.deltaLink"])


async def run_async(cfg: Config) -> list[Figure]:
    scenario = visits_scenario("bench_delta", rows=2_000, users=1)
    async with ChildServer("syncsim", scenario) as ours, ChildServer("bare", ({}, "")) as bare, \
            aiohttp.ClientSession() as session:
        token = await Admin(session, ours.base_url, ours.admin_key).token(user_name(1))
        hdrs = headers(token, device="bench-device")
        link = await delta_link(session, ours.base_url, headers(token, tracked=True, device="bench-device"))
        async with session.get(link, headers=hdrs) as resp:
            sample = await resp.read()
            if resp.status != 200 or orjson.loads(sample)["value"]:
                raise RuntimeError(f"the delta is not empty: HTTP {resp.status} {sample[:300]!r}")
        hello = f"{bare.base_url}{HELLO_PATH}"
        cpu: dict[str, list[float]] = {"ours": [], "bare": [], "client ours": [], "client bare": []}

        async def side(server: ChildServer, url: str, key: str) -> float:
            c0, p0 = server.cpu_s(), time.process_time()
            rate = await hammer(session, url, hdrs, cfg)
            cpu[f"client {key}"].append((time.process_time() - p0) / cfg.requests)
            cpu[key].append((server.cpu_s() - c0) / cfg.requests)
            return rate

        await hammer(session, hello, hdrs, Config(cfg.clients * 20, cfg.clients, 1, 10))  # open connections
        r = await interleave(lambda: side(ours, link, "ours"), lambda: side(bare, hello, "bare"),
                             cfg.rounds, deadline_in(cfg.budget_s))
    cpu_ours, cpu_bare, client_ours, client_bare = (statistics.median(cpu[k]) * 1e6 for k in cpu)
    return [
        relative(NAME, "empty delta requests", r.ours_median, "req/s", r.ratio, TARGET_RATIO, r.bare_median,
                 detail=f"{cfg.requests:,} GETs of the deltaLink from {cfg.clients} clients per round, "
                        f"answer {len(sample)} B; {len(r.ours)} rounds, {r.spread()}",
                 rounds_ours=r.ours, rounds_bare=r.bare),
        info(NAME, "server CPU per empty delta", cpu_ours, "µs",
             detail=f"bare hello world {cpu_bare:.0f} µs, bare/ours = {cpu_bare / cpu_ours:.2f}; client CPU "
                    f"per request {client_ours:.0f} µs (bare side {client_bare:.0f} µs)",
             bare_us=cpu_bare, client_us=client_ours, client_bare_us=client_bare),
    ]


def figures(quick: bool = False) -> list[Figure]:
    return asyncio.run(run_async(QUICK if quick else FULL))
