"""Server-side scheduled activity: the back-office writer and the scenario's privilege changes.

Both run as background tasks started and stopped with the app (aiohttp cleanup_ctx). Times are
scenario seconds from the server's start. The back office can be paused through
PUT /_syncsim/activity {"back_office": false} (the runner does so for its quiet period).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
from collections.abc import AsyncIterator
from itertools import islice

import numpy as np
from aiohttp import web

from simulator import seeds
from simulator.server.errors import DataverseError
from simulator.server.mutations import Writer
from simulator.server.privileges import change_privilege
from simulator.server.state import STATE, ServerState
from simulator.server.store import Row, TableStore

TICK_REAL_S = 0.05  # in real time the writer wakes at most this often and catches up in bulk


async def activity_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    start_activity(state)
    # the server process's own health, in wall time (a virtual run has no process of its own to watch)
    sampling = asyncio.create_task(state.health.run()) if state.clock.kind != "virtual" else None
    yield
    if sampling is not None:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    await stop_activity(state)


def start_activity(state: ServerState) -> None:
    """Start the privilege schedule (relative to `state.started_at`) and the back office."""
    state.activity_tasks = [asyncio.create_task(_privilege_schedule(state))]
    if state.scenario.back_office.writes_per_s > 0 or state.scenario.back_office.file_deletes_per_s > 0:
        state.activity_tasks.append(asyncio.create_task(BackOffice(state).run()))


async def stop_activity(state: ServerState) -> None:
    tasks, state.activity_tasks = state.activity_tasks, []
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def restart_run(state: ServerState, started_at: float) -> None:
    """A run starts now: scheduled privilege changes count from `started_at` (scenario time) and
    the back office starts afresh (POST /_syncsim/run; a server started before its run uses it)."""
    await stop_activity(state)
    state.started_at = started_at
    start_activity(state)


async def _privilege_schedule(state: ServerState) -> None:
    for change in sorted(state.scenario.privilege_changes, key=lambda c: c.at_s):
        await state.clock.sleep(state.started_at + change.at_s - state.clock.now())
        users = [u for u in state.store.users if u.user_class == change.user_class][: change.users]
        update = {k: v for k, v in (("read", change.read), ("write", change.write)) if v is not None}
        for user in users:
            change_privilege(state, user, change.table, update)


class BackOffice:
    """Creates, updates and deletes rows at `writes_per_s` (scenario time), favouring hot rows."""

    def __init__(self, state: ServerState) -> None:
        cfg = state.scenario.back_office
        self.state = state
        self.cfg = cfg
        self.rng = seeds.scenario_rng(state.scenario.seed, seeds.BACK_OFFICE)
        self.user = state.store.users_by_name["backoffice"]
        self.tables = [state.store.table(t) for t in (cfg.tables or list(state.store.tables))]
        mix = np.array([cfg.mix.update, cfg.mix.create, cfg.mix.delete], dtype=float)
        cdf = mix.cumsum()
        self.mix_cdf = [float(x) for x in cdf / cdf[-1]]  # as Generator.choice(3, p=mix) draws, without its checks
        self.hot: list[str] = []
        if cfg.hot_rows is not None:
            table = state.store.table(cfg.hot_rows.table)
            ids = sorted(table.rows)
            count = min(cfg.hot_rows.count, len(ids))
            self.hot = [ids[int(i)] for i in self.rng.choice(len(ids), size=count, replace=False)] if ids else []
        self.writes = 0
        self.files_deleted = 0

    async def run(self) -> None:
        """Write at the configured rates until cancelled. The n-th write is due n / writes_per_s
        scenario seconds after the start (file deletes likewise); the writer wakes when the next is due
        (on a virtual clock exactly then; in real time at most every TICK_REAL_S, catching up in bulk)."""
        clock, cfg = self.state.clock, self.cfg
        tick_s = TICK_REAL_S / clock.to_real(1.0) if clock.kind == "real" else 0.0  # scenario seconds
        start = clock.now()
        writes = deletes = 0
        while True:
            elapsed = clock.now() - start
            for _ in range(_due(elapsed, cfg.writes_per_s) - writes):
                writes += 1
                if self.state.back_office_enabled:
                    self.write_one()
            for _ in range(_due(elapsed, cfg.file_deletes_per_s) - deletes):
                deletes += 1
                if self.state.back_office_enabled:
                    self.delete_file()
            next_at = min(_at(writes + 1, cfg.writes_per_s), _at(deletes + 1, cfg.file_deletes_per_s))
            await clock.sleep(max(tick_s, next_at - elapsed))

    def delete_file(self) -> None:
        """Remove the file of a random row that has one (a note's image deleted in the back office)."""
        tables = [t for t in self.state.store.tables.values() if t.file_columns and t.rows]
        if not tables:
            return
        table = tables[int(self.rng.integers(len(tables)))]
        row_id = _random_id(table.rows, self.rng)
        row = table.rows[row_id] if row_id is not None else None
        if row is None or not row.files:
            return
        column = sorted(row.files)[int(self.rng.integers(len(row.files)))]
        Writer(self.state, self.user).set_file(table, row.id, column, None)
        self.files_deleted += 1

    def write_one(self) -> None:
        """One back-office write; refusals (a row gone meanwhile) are simply skipped."""
        kind = ("update", "create", "delete")[min(bisect.bisect_right(self.mix_cdf, self.rng.random()), 2)]
        hot = self.cfg.hot_rows
        if kind == "update" and self.hot and hot is not None and self.rng.random() < hot.share:
            table = self.state.store.table(hot.table)
            row_id: str | None = self.hot[int(self.rng.integers(len(self.hot)))]
        else:
            table = self.tables[int(self.rng.integers(len(self.tables)))]
            row_id = _random_id(table.rows, self.rng) if kind != "create" else None
        writer = Writer(self.state, self.user)
        try:
            if kind == "create":
                writer.create(table, _values(table, self.rng))
            elif row_id is not None and kind == "update":
                writer.update(table, row_id, _values(table, self.rng), if_match="*")
            elif row_id is not None and row_id not in self.hot:
                writer.delete(table, row_id)
        except DataverseError:
            return
        self.writes += 1


def _due(elapsed_s: float, per_s: float) -> int:
    """How many events at `per_s` a second are due `elapsed_s` seconds after the start (a hair of
    tolerance, so an event woken for exactly on time is not taken for early)."""
    return int(elapsed_s * per_s + 1e-9) if per_s > 0 else 0


def _at(n: int, per_s: float) -> float:
    """Seconds after the start at which the n-th event at `per_s` a second is due (never at rate 0)."""
    return n / per_s if per_s > 0 else math.inf


def _random_id(rows: dict[str, Row], rng: np.random.Generator) -> str | None:
    if not rows:
        return None
    return next(islice(iter(rows), int(rng.integers(len(rows))), None))


def _values(table: TableStore, rng: np.random.Generator) -> dict[str, object]:
    """A change to one plain column (or the primary name)."""
    cols = [c for c in table.meta.columns if c.type in ("integer", "decimal", "choice", "text")]
    if not cols:
        return {table.meta.primary_name: f"back office {int(rng.integers(1_000_000))}"}
    col = cols[int(rng.integers(len(cols)))]
    if col.type == "integer":
        return {col.name: int(rng.integers(int(col.min), int(col.max) + 1))}
    if col.type == "decimal":
        return {col.name: round(float(rng.uniform(col.min, col.max)), 2)}
    if col.type == "choice":
        values = list((col.options or {}).values())
        return {col.name: int(values[int(rng.integers(len(values)))])}
    return {col.name: f"back office {int(rng.integers(1_000_000))}"[: col.max_length]}
