"""make_app: the mock Dataverse server as an aiohttp Application (not subclassed)."""

from __future__ import annotations

from aiohttp import web

from simulator.clock import Clock
from simulator.scenario import Scenario
from simulator.server import middlewares, service
from simulator.server.activity import activity_ctx
from simulator.server.handlers import admin, batch, bulk, count, files, metadata, reads, writes
from simulator.server.http_errors import HANDLER_ARGS
from simulator.server.limits import ServiceProtection
from simulator.server.state import STATE, ServerState
from simulator.server.store import Store


def make_app(scenario: Scenario, store: Store, clock: Clock, admin_key: str | None = None) -> web.Application:
    """The server for a scenario over a seeded store; state lives under STATE. On a virtual clock the
    server's own time is the scenario's server model (service.py); in real time it is its CPU's."""
    max_body = int(scenario.server.max_body_mb * 1024 * 1024)
    app = web.Application(
        # the server model and faults sit inside service protection: modelled time and injected
        # latency are server time, like a slow server's
        middlewares=[middlewares.errors, middlewares.auth, middlewares.protection, service.service_time,
                     middlewares.faults, middlewares.idempotency],
        client_max_size=max_body,
        handler_args=HANDLER_ARGS,  # request lines up to Dataverse's URL limit
    )
    app[STATE] = ServerState(scenario, store, clock, admin_key)
    app[middlewares.PROTECTION] = ServiceProtection(scenario.server.limits)
    # virtual time: the model is the server's time; real time: each request's time is measured
    app[service.SERVER_TIME] = service.ServerTime(scenario.server.model, clock, measuring=clock.kind != "virtual")
    app.on_response_prepare.append(service.on_prepare)  # first: the modelled time comes before the answer
    app.on_response_prepare.append(middlewares.mark_prepared)
    app.cleanup_ctx.append(activity_ctx)
    # route tables in match order: fixed paths before the generic <set> and <set>(<id>) routes
    for module in (admin, metadata, batch, bulk, files, count, reads, writes):
        app.router.add_routes(module.routes)
    return app
