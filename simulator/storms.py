"""429 storms: bursts of concurrent requests from another client of some scenario users (a second
app, a script), so their devices meet throttling they did not cause (scenario `storms`).

Each burst sends `requests` concurrent GETs of one row with the user's own token and no device
header, over the run's loopback session. Bounded: one burst per user every `every_s` scenario
seconds until the run's end.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp

from simulator.clock import Clock
from simulator.protocol.odata import API_ROOT
from simulator.scenario import Scenario

Token = Callable[[str], Awaitable[str]]


def storm_users(scenario: Scenario) -> list[str]:
    """The users the scenario's storms come from (the first N of the class)."""
    cfg = scenario.storms
    if cfg is None:
        return []
    count = min(cfg.users, scenario.class_counts().get(cfg.user_class, 0))
    return [f"{cfg.user_class}-{n:04d}" for n in range(1, count + 1)]


async def run_storms(scenario: Scenario, session: aiohttp.ClientSession, base_url: str, token: Token,
                     clock: Clock, stop_at: float, counts: Counter[str]) -> None:
    """Burst every `every_s` until `stop_at`; counts requests sent and 429s received in `counts`."""
    cfg = scenario.storms
    users = storm_users(scenario)
    if cfg is None or not users:
        return
    url = f"{base_url}{API_ROOT}/{scenario.tables[0].set_name}?$top=1"
    while True:
        await clock.sleep(cfg.every_s)
        if clock.now() >= stop_at:
            return
        for user in users:
            headers = {"Authorization": f"Bearer {await token(user)}"}
            statuses = await asyncio.gather(*(_get(session, url, headers) for _ in range(cfg.requests)))
            counts["storm_requests"] += len(statuses)
            counts["storm_429"] += sum(1 for s in statuses if s == 429)


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    try:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return 0
