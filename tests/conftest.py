"""Shared fixtures: a small scenario, a seeded server, and tokens for its users."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import settings

from simulator.clock import ManualClock
from simulator.scenario import Scenario, parse_scenario
from simulator.server.app import make_app
from simulator.server.seed import build_store
from simulator.server.state import STATE, ServerState

pytest_plugins = ["tests.rig"]

# Property tests without their own max_examples run 30 examples ("ci"); HYPOTHESIS_PROFILE=deep runs 500.
settings.register_profile("ci", max_examples=30, deadline=None)
settings.register_profile("deep", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SMALL: dict[str, Any] = {
    "name": "unit",
    "seed": 7,
    "tables": [
        {"logical_name": "account", "rows": 20, "columns": [
            {"name": "revenue", "type": "decimal", "min": 0, "max": 1000},
        ]},
        {"logical_name": "msdyn_workorder", "rows": 60, "owned_by": ["technician"], "columns": [
            {"name": "msdyn_priority", "type": "choice", "options": {"Low": 1, "Normal": 2, "High": 3}},
            {"name": "msdyn_duration", "type": "integer", "min": 0, "max": 480},
            {"name": "msdyn_account", "type": "lookup", "target": "account"},
        ]},
        {"logical_name": "annotation", "entity_set": "annotations", "rows": 80, "columns": [
            {"name": "objectid", "type": "lookup", "target": "msdyn_workorder"},
            {"name": "documentbody", "type": "file", "size": {"median_kb": 20, "sigma": 0.5, "max_kb": 100}},
        ]},
    ],
    "user_classes": [
        {"name": "technician", "count": 3, "teams": 1, "behaviour": {"edit_tables": ["msdyn_workorder"]},
         "privileges": {"msdyn_workorder": {"read": "org", "write": "org", "delete": "org"}},
         "profile": [
             {"table": "account"},
             {"table": "msdyn_workorder", "filter": "owner"},
             {"table": "annotation", "filter": "related", "related_table": "msdyn_workorder", "via": "objectid"},
         ]},
        {"name": "manager", "count": 1, "profile": [{"table": "account"}, {"table": "msdyn_workorder"},
                                                     {"table": "annotation"}]},
    ],
}


def small_scenario(**changes: Any) -> Scenario:
    return parse_scenario({**SMALL, **changes})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_server(clock: ManualClock) -> Callable[..., web.Application]:
    def factory(scenario: Scenario | None = None) -> web.Application:
        scenario = scenario or small_scenario()
        return make_app(scenario, build_store(scenario, clock.now()), clock, admin_key="admin")
    return factory


class Api:
    """A test client that logs in as scenario users and speaks the Web API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.state: ServerState = client.server.app[STATE]
        self.tokens: dict[str, str] = {}

    async def token(self, user: str) -> str:
        if user not in self.tokens:
            resp = await self.client.post("/_syncsim/token", json={"user": user},
                                          headers={"Authorization": "Bearer admin"})
            assert resp.status == 200, await resp.text()
            self.tokens[user] = (await resp.json())["access_token"]
        return self.tokens[user]

    async def call(self, method: str, path: str, user: str = "technician-0001", *, device: bool = False,
                   headers: dict[str, str] | None = None, **kw: Any) -> Any:
        h = {"Authorization": f"Bearer {await self.token(user)}", **(headers or {})}
        if device:
            h["x-syncsim-device-id"] = f"dev-{user}"
        if path.startswith("http"):
            from yarl import URL
            url = URL(path, encoded=True)
            path = str(url.relative())
        return await self.client.request(method, path, headers=h, **kw)


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> Api:
    return Api(await aiohttp_client(make_server()))
