"""A mock server plus simulated devices for its users on one manual clock (the `rig_factory` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from simulator.check import compare
from simulator.clock import ManualClock, Timeline
from simulator.device.client import ApiClient, Identity
from simulator.device.device import Device, DeviceSpec
from simulator.device.processing import NO_PROCESSING, Processing
from simulator.events import Events
from simulator.ledger import Journal, check_run
from simulator.metrics import Metrics
from simulator.network import Link, NetworkModel
from simulator.runner import device_end
from simulator.scenario import Scenario
from simulator.server.app import make_app
from simulator.server.mutations import Writer
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
        self.journal = Journal().attach(self.events)

    def device(self, user: str, storage_bytes: int = 1 << 30, page_size: int = 5000,
               network: NetworkModel | None = None, processing: Processing = NO_PROCESSING) -> Device:
        """A device for `user` on a loopback link (or `network`, e.g. NetworkModel(rng, down_kbps=100)),
        whose own work costs nothing (or what `processing` says)."""
        cls = self.state.scenario.user_class(user.rsplit("-", 1)[0])
        model = network or NetworkModel.from_preset("loopback", np.random.default_rng(0))
        number = self.state.store.users_by_name[user].index  # each device its own draws, as in a run
        spec = DeviceSpec(f"dev-{user}", user, cls.name, storage_bytes, model.name, (1, number), processing)
        link = Link(model, self.clock, self.session, Timeline(self.clock))  # lived time, shared with its ApiClient
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


    def back_office_update(self, table: str, row_id: str, values: dict[str, Any] | None = None) -> None:
        """The back office changes a row, through the server's write path (so the write log has it)."""
        writer = Writer(self.state, self.state.store.users_by_name["backoffice"])
        writer.update(self.state.store.table(table), row_id, values or {}, if_match="*")

    async def ledger(self, *devices: Device) -> dict[str, Any]:
        """The run's ledger for these devices, from the server's /_syncsim/ endpoints, as the runner checks it."""
        headers = {"Authorization": "Bearer admin"}
        async with self.session.get(f"{self.base}/_syncsim/ledger", headers=headers) as resp:
            server = await resp.json()
        expected = {}
        for d in devices:
            async with self.session.get(f"{self.base}/_syncsim/snapshot", params={"user": d.spec.user},
                                        headers=headers) as resp:
                expected[d.spec.name] = await resp.json()
        return check_run(self.journal, server, [device_end(d, {}) for d in devices], expected)


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
