"""A mock server plus simulated devices for its users on one manual clock (the `rig_factory` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from simulator.check import compare
from simulator.clock import ManualClock
from simulator.device.client import ApiClient, Identity
from simulator.device.device import Device, DeviceSpec
from simulator.events import Events
from simulator.metrics import Metrics
from simulator.network import Link, NetworkModel
from simulator.scenario import Scenario
from simulator.server.app import make_app
from simulator.server.seed import build_store
from simulator.server.state import STATE, ServerState
from tests.conftest import small_scenario


class Rig:
    """A server plus devices for its users, sharing one manual clock."""

    def __init__(self, server: Any, clock: ManualClock, session: aiohttp.ClientSession) -> None:
        self.server, self.clock, self.session = server, clock, session
        self.state: ServerState = server.app[STATE]
        self.base = str(server.make_url("")).rstrip("/")
        self.events = Events()
        self.metrics = Metrics(self.events)

    def device(self, user: str, storage_bytes: int = 1 << 30, page_size: int = 5000,
               network: NetworkModel | None = None) -> Device:
        """A device for `user` on a loopback link (or `network`, e.g. NetworkModel(rng, down_kbps=100))."""
        cls = self.state.scenario.user_class(user.rsplit("-", 1)[0])
        model = network or NetworkModel.from_preset("loopback", np.random.default_rng(0))
        spec = DeviceSpec(f"dev-{user}", user, cls.name, storage_bytes, model.name, (1, 2))
        link = Link(model, self.clock, self.session)
        state = self.state

        async def token() -> str:
            return state.issue_token(state.store.users_by_name[user])[0]

        api = ApiClient(link, self.clock, self.base, token, Identity(spec.name, user, cls.name), self.events)
        device = Device(spec, cls, api, link, self.clock, self.events, self.clock.now())
        device.engine.page_size = page_size
        return device

    def check(self, device: Device) -> Any:
        user = self.state.store.users_by_name[device.spec.user]
        return compare(device.spec.name, device.store.snapshot(), self.state.access.snapshot(user), len(device.outbox))


@pytest.fixture
async def rig_factory(aiohttp_server: Callable[..., Any], clock: ManualClock) -> Any:
    sessions: list[aiohttp.ClientSession] = []

    async def make(scenario: Scenario | None = None, middlewares: list[Any] | None = None) -> Rig:
        scenario = scenario or small_scenario()
        app = make_app(scenario, build_store(scenario, clock.now()), clock, admin_key="admin")
        for mw in middlewares or []:
            app.middlewares.insert(0, mw)
        server = await aiohttp_server(app)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Rig(server, clock, session)

    yield make
    for s in sessions:
        await s.close()
