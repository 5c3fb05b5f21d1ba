"""syncsim's own extensions under /_syncsim/ (admin key as bearer, except health)."""

from __future__ import annotations

import math
import zlib
from typing import Any

import orjson
from aiohttp import web

from simulator.protocol import ErrorCode
from simulator.scenario import Depth, Faults
from simulator.server.activity import restart_run, stop_activity
from simulator.server.errors import DataverseError
from simulator.server.handlers.common import state_of
from simulator.server.middlewares import PROTECTION, json_response
from simulator.server.privileges import change_privilege
from simulator.server.seed import build_store, file_bytes
from simulator.server.service import SERVER_TIME
from simulator.server.state import STATE, ServerState
from simulator.server.store import FileInfo, User

routes = web.RouteTableDef()
_DEPTHS = ("none", "user", "team", "org")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "The request body must be a JSON object.")
    return data


def _user(state: ServerState, name: Any) -> User:
    if not isinstance(name, str):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "`user` must be a user's name (a string).")
    user = state.store.users_by_name.get(name)
    if user is None:
        raise DataverseError(ErrorCode.NOT_FOUND, f"No user named {name!r} in this scenario.")
    return user


@routes.get("/_syncsim/health", name="health")
async def health(request: web.Request) -> web.Response:
    """Liveness, which scenario is served, and the server process's last second (loop lag, CPU, memory)."""
    state = state_of(request)
    latest = state.health.latest
    return json_response({"status": "ok", "scenario": state.scenario.name, "seed": state.scenario.seed,
                          "users": state.scenario.class_counts(), "version": state.store.version,
                          "rows": sum(len(t) for t in state.store.tables.values()),
                          "process": None if latest is None else latest.to_dict()})


@routes.put("/_syncsim/clock", name="clock")
async def clock(request: web.Request) -> web.Response:
    """{"time_scale", "now"}: the server's scenario clock joins a run's timeline."""
    state = state_of(request)
    data = await _json(request)
    scale, now = _finite(data.get("time_scale")), _finite(data.get("now"))
    if scale is None or scale <= 0 or now is None:
        raise DataverseError(ErrorCode.VALIDATION, "time_scale (a number > 0) and now (scenario epoch seconds) are required.")
    rebase = getattr(state.clock, "rebase", None)
    if rebase is None:
        raise DataverseError(ErrorCode.VALIDATION, "This server's clock cannot be set (it is not a real-time clock).")
    rebase(scale, now)
    return json_response({"time_scale": state.clock.time_scale, "now": state.clock.now()})


@routes.post("/_syncsim/run", name="run")
async def run(request: web.Request) -> web.Response:
    """{"started_at"}: a run starts; the privilege schedule counts from it and the back office restarts.
    A server that served a run before starts this one from the scenario's seeded state again (a
    long-running `syncsim serve` takes run after run, each as if it were the first)."""
    state = state_of(request)
    started_at = _finite((await _json(request)).get("started_at"))
    if started_at is None:
        raise DataverseError(ErrorCode.VALIDATION, "started_at (scenario epoch seconds) is required.")
    if state.runs:
        await stop_activity(state)
        _reseed(request.app, state)
    state.runs += 1
    await restart_run(state, started_at)
    return json_response({"started_at": state.started_at, "run": state.runs})


def _reseed(app: web.Application, state: ServerState) -> None:
    """The scenario's seeded state again, in place (every handler holds the same objects): a store
    seeded afresh (the same rows, ids and versions: the seed decides), no tokens, counters, write log,
    idempotency keys, caches or service-protection windows of the runs before."""
    runs, health = state.runs, state.health
    state.__init__(state.scenario, build_store(state.scenario, state.clock.now()),  # type: ignore[misc]
                   state.clock, state.admin_key)
    state.runs, state.health = runs, health
    app[PROTECTION].__init__(state.scenario.server.limits)  # type: ignore[misc]
    server_time = app[SERVER_TIME]
    server_time.served, server_time.busy_s, server_time.queued_s = 0, 0.0, 0.0
    server_time.samples.clear()


def _finite(value: Any) -> float | None:
    """A finite JSON number as a float, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@routes.post("/_syncsim/token", name="token")
async def token(request: web.Request) -> web.Response:
    """{"user": "<name>"} -> {"access_token", "expires_in", "user_id"}."""
    state = state_of(request)
    user = _user(state, (await _json(request)).get("user"))
    value, ttl = state.issue_token(user)
    return json_response({"access_token": value, "token_type": "Bearer", "expires_in": int(ttl), "user_id": user.id})


@routes.get("/_syncsim/counters", name="counters")
async def counters(request: web.Request) -> web.Response:
    return json_response(counters_of(request.app))


def counters_of(app: web.Application) -> dict[str, object]:
    """The server's counters, and in a virtual-time run what its model spent (`server_time`)."""
    out = app[STATE].counters.to_dict()
    server_time = app.get(SERVER_TIME)
    if server_time is not None:
        out["server_time"] = server_time.to_dict()
    return out


@routes.get("/_syncsim/ledger", name="ledger")
async def ledger(request: web.Request) -> web.Response:
    """The server's side of the run's ledger: writes applied, device writes refused, early requests,
    rows deleted, and the current version of every row written since seeding."""
    state = state_of(request)
    log = state.write_log
    current: dict[str, dict[str, int]] = {}
    for table in state.store.tables.values():
        rows = {i: r.version for i, r in table.rows.items() if r.version > log.seed_version}
        if rows:
            current[table.meta.logical_name] = rows
    deleted = {t.meta.logical_name: sorted(t.deleted) for t in state.store.tables.values() if t.deleted}
    return json_response({**log.to_dict(), "version": state.store.version, "current": current, "deleted": deleted})


@routes.get("/_syncsim/faults", name="faults_get")
async def faults_get(request: web.Request) -> web.Response:
    return json_response(state_of(request).faults.model_dump())


@routes.put("/_syncsim/faults", name="faults_put")
async def faults_put(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        state.faults = Faults.model_validate({**state.faults.model_dump(), **await _json(request)})
    except ValueError as exc:
        raise DataverseError(ErrorCode.VALIDATION, f"Invalid fault settings: {exc}") from None
    return json_response(state.faults.model_dump())


@routes.post("/_syncsim/privileges", name="privileges")
async def privileges(request: web.Request) -> web.Response:
    """{"user": name, "table": logical name, "read"?: depth, "write"?: depth}: takes effect at once."""
    state = state_of(request)
    data = await _json(request)
    user = _user(state, data.get("user"))
    table = str(data.get("table"))
    if table not in state.store.tables:
        raise DataverseError(ErrorCode.NOT_FOUND, f"No table named {table!r}; tables: {sorted(state.store.tables)}.")
    changes: dict[str, Depth] = {}
    for field in ("read", "write", "delete"):
        if field in data:
            if data[field] not in _DEPTHS:
                raise DataverseError(ErrorCode.VALIDATION, f"{field} must be one of {list(_DEPTHS)}, got {data[field]!r}.")
            changes[field] = data[field]
    change_privilege(state, user, table, changes)
    return json_response({"user": user.name, "table": table, **user.privilege(table).model_dump()})


@routes.get("/_syncsim/snapshot", name="snapshot")
async def snapshot(request: web.Request) -> web.Response:
    """?user=<name>: {"version": v, "tables": {table: {row id: version}}} the user's device should hold."""
    state = state_of(request)
    user = _user(state, request.query.get("user"))
    tables = state.access.snapshot(user)
    return json_response({"user": user.name, "version": state.store.version, "tables": tables,
                          "contents": state.access.contents(user, tables), "files": _files(state, user, tables)})


def _files(state: ServerState, user: User, tables: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    """The files a device of `user` should hold: key -> [size, CRC-32] (CRCs cached per file id)."""
    out: dict[str, list[int]] = {}
    for name, rows in tables.items():
        pt = state.access.profile(user, name)
        table = state.store.table(name)
        if pt is None or not pt.files or not table.file_columns:
            continue
        limit = None if pt.max_file_kb is None else pt.max_file_kb * 1024
        for row_id in rows:
            files = table.rows[row_id].files or {}
            for column in table.file_columns:
                info = files.get(column)
                if info is not None and info.size > 0 and (limit is None or info.size <= limit):
                    out[f"{name}/{row_id}/{column}"] = [info.size, _crc(state, info)]
    return out


def _crc(state: ServerState, info: FileInfo) -> int:
    crc = state.file_crcs.get(info.file_id)
    if crc is None:
        crc = 0
        for start in range(0, info.size, 1 << 20):
            crc = zlib.crc32(file_bytes(info, start, min(info.size, start + (1 << 20))), crc)
        state.file_crcs[info.file_id] = crc
    return crc


@routes.put("/_syncsim/activity", name="activity")
async def activity(request: web.Request) -> web.Response:
    """{"back_office": bool}: pause or resume the back-office writer (the runner's quiet period)."""
    state = state_of(request)
    data = await _json(request)
    if "back_office" in data:
        if not isinstance(data["back_office"], bool):
            raise DataverseError(ErrorCode.VALIDATION, "back_office must be true or false.")
        state.back_office_enabled = data["back_office"]
    return json_response({"back_office": state.back_office_enabled})
