"""The planted bugs: each a function from the original (a function or method) to a replacement with
one realistic bug in it. They are written as wrappers around the real code, so a bug stays the size
of the mistake it stands for, and the code it wraps keeps changing without breaking the bug.

A bug that strikes "one in N" counts its own calls, so a run is still deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

Fn = Callable[..., Any]
Bug = Callable[[Fn], Fn]


# --- the server ---------------------------------------------------------------------------------
def write_answered_not_applied(every: int) -> Bug:
    """`Writer._update`: one device update in `every` is answered as applied, and nothing is written."""
    def bug(original: Fn) -> Fn:
        calls = itertools.count(1)

        def _update(self: Any, table: Any, row_id: str, payload: Any, if_match: Any, if_none_match: Any) -> Any:
            from simulator.server.mutations import WriteResult

            row = table.rows.get(row_id)
            if self.origin.device is not None and row is not None and next(calls) % every == 0:
                return WriteResult(row_id, row)
            return original(self, table, row_id, payload, if_match, if_none_match)
        return _update
    return bug


def values_dropped(every: int) -> Bug:
    """`Writer._values`: one device update in `every` makes a new version without the edit's values."""
    def bug(original: Fn) -> Fn:
        calls = itertools.count(1)

        def _values(self: Any, table: Any, payload: Any, for_create: bool, row_id: str | None = None) -> Any:
            values, owner, key = original(self, table, payload, for_create, row_id=row_id)
            if not for_create and self.origin.device is not None and next(calls) % every == 0:
                return {}, owner, key
            return values, owner, key
        return _values
    return bug


def no_tombstones(original: Fn) -> Fn:
    """`delta_items`: a delta lists changed rows but never the rows deleted or gone from the view."""
    def delta_items(*args: Any) -> Any:
        return [item for item in original(*args) if not isinstance(item, str)]
    return delta_items


def continuation_skips_a_row(original: Fn) -> Fn:
    """`_position`: a delta's continuation page starts one row after where the last page ended."""
    def _position(items: Any, after: Any) -> int:
        start: int = original(items, after)
        return start + 1 if after is not None else start
    return _position


def view_changes_forgotten(original: Fn) -> Fn:
    """`change_privilege`: the privilege changes, but the rows it moves out of a view are not logged
    for deltas, so devices are never told to drop them."""
    def change_privilege(state: Any, user: Any, table: str, changes: dict[str, Any]) -> None:
        before = {t: len(v) for t, v in user.view_log.items()}
        original(state, user, table, changes)
        for t, log in user.view_log.items():
            del log[before.get(t, 0):]
    return change_privilege


def idempotency_forgotten(original: Fn) -> Fn:
    """The idempotency middleware: the server never finds a retried write's first answer."""
    from aiohttp import web

    @web.middleware
    async def idempotency(request: Any, handler: Any) -> Any:
        from simulator.server.handlers.common import state_of

        response = await original(request, handler)
        state_of(request).idempotency.clear()
        return response
    return idempotency


def deleted_rows_come_back(original: Fn) -> Fn:
    """`Writer._update`: `If-Match: *` on a deleted row creates it again (an upsert) instead of 404."""
    def _update(self: Any, table: Any, row_id: str, payload: Any, if_match: Any, if_none_match: Any) -> Any:
        if if_match == "*" and row_id not in table.rows:
            if_match = None
        return original(self, table, row_id, payload, if_match, if_none_match)
    return _update


# --- the device ---------------------------------------------------------------------------------
def removals_ignored(original: Fn) -> Fn:
    """`PageRows.commit`: the device stores a page's new and changed rows but skips its removals."""
    def commit(self: Any) -> int:
        self.removed.clear()
        return int(original(self))
    return commit


def edit_dropped(every: int) -> Bug:
    """`Outbox.add`: one edit in `every` is accepted and never queued."""
    def bug(original: Fn) -> Fn:
        calls = itertools.count(1)

        def add(self: Any, op: Any) -> Any:
            from simulator.device.outbox import Added

            if next(calls) % every == 0:
                return Added()
            return original(self, op)
        return add
    return bug


def no_chaining(original: Fn) -> Fn:
    """`Outbox.chain`: a waiting op of a row keeps its old base version after an earlier op of the
    same row was applied, so the device's second edit conflicts with its first."""
    def chain(self: Any, table: str, row_id: str, version: int) -> None:
        return None
    return chain


def no_merging(original: Fn) -> Fn:
    """`Outbox.add`: every edit is its own op (a later edit of a row relies on chaining)."""
    def add(self: Any, op: Any) -> Any:
        from simulator.device.outbox import Added

        self._ops[op.op_id] = op
        self._rows.setdefault((op.table, op.row_id), []).append(op)
        return Added()
    return add


def no_idempotency_key(original: Fn) -> Fn:
    """`ApiClient.call`: the device sends writes without their idempotency key."""
    async def call(self: Any, method: str, path: str, tally: Any, **kwargs: Any) -> Any:
        from simulator.protocol import H

        headers = kwargs.get("headers")
        if isinstance(headers, dict):
            kwargs["headers"] = {k: v for k, v in headers.items() if k != H.IDEMPOTENCY_KEY}
        return await original(self, method, path, tally, **kwargs)
    return call


def retry_after_ignored(original: Fn) -> Fn:
    """`_retry_after`: the device reads every Retry-After as 0 s and asks again at once."""
    def _retry_after(resp: Any) -> float:
        return 0.0
    return _retry_after


def every_write_a_conflict(original: Fn) -> Fn:
    """`SyncEngine._apply_outcome`: every applied upload is counted as a conflict."""
    def _apply_outcome(self: Any, op: Any, outcome: Any, result: Any) -> None:
        original(self, op, outcome, result)
        if outcome[0] < 300 and not outcome[2]:
            result.conflicts += 1
    return _apply_outcome


def refusals_not_conflicts(original: Fn) -> Fn:
    """`SyncEngine._apply_outcome`: a 412 (server wins) is not counted as a conflict."""
    def _apply_outcome(self: Any, op: Any, outcome: Any, result: Any) -> None:
        before = result.conflicts
        original(self, op, outcome, result)
        if outcome[0] == 412:
            result.conflicts = before
    return _apply_outcome


def timed_from_last_attempt(original: Fn) -> Fn:
    """`FirstSyncTracker.result`: a first sync is timed from the start of its last attempt."""
    def result(self: Any, lived_now: float, finished: bool, first_request_at: float | None, **kw: Any) -> Any:
        if self.attempts:
            last = self.attempts[-1]
            first_request_at = last.ended_at - last.duration_s
        return original(self, lived_now, finished, first_request_at, **kw)
    return result


def quota_off(original: Fn) -> Fn:
    """`LocalStore.reserve`: the device never checks its storage capacity."""
    def reserve(self: Any, nbytes: int) -> None:
        return None
    return reserve


def file_bytes_garbled(original: Fn) -> Fn:
    """`LocalStore.add_file_bytes`: the first byte of every downloaded piece is written wrong."""
    def add_file_bytes(self: Any, key: str, chunk: bytes) -> None:
        if chunk:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        original(self, key, chunk)
    return add_file_bytes


# --- the report ---------------------------------------------------------------------------------
def p95_is_the_mean(original: Fn) -> Fn:
    """`stats`: the 95th percentile is computed as the mean."""
    def stats(values: Any, keys: Any) -> Any:
        values = list(values)
        out = original(values, [*keys, "mean"])
        if "p95" in out:
            out["p95"] = out["mean"]
        return {k: out[k] for k in keys}
    return stats


def failed_syncs_dropped(original: Fn) -> Fn:
    """The report's per-class grouping: failed syncs are left out."""
    def add(self: Any, record: Any) -> None:
        if record.result != "success" and not record.final:
            return
        original(self, record)
    return add


def body_not_the_edit(original: Fn) -> Fn:
    """`upload._request`: an update sends its first column one higher (or longer) than the edit made."""
    def _request(op: Any, detect: bool) -> Any:
        import orjson

        method, path, headers, body = original(op, detect)
        if method == "PATCH" and body:
            values = orjson.loads(body)
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    values[key] = value + 1
                    break
                if isinstance(value, str) and not key.endswith("@odata.bind"):
                    values[key] = value[:-1] + "?" if value else "?"
                    break
            body = orjson.dumps(values)
        return method, path, headers, body
    return _request


def deletes_never_sent(original: Fn) -> Fn:
    """`Outbox.next_group`: once a delete is next in line, the device sends nothing more."""
    def next_group(self: Any, limit: int) -> Any:
        group = original(self, limit)
        if group is not None and any(op.kind == "delete" for op in group.ops):
            return None
        return group
    return next_group


def csv_drops_final_syncs(original: Fn) -> Fn:
    """`write_csv`: syncs.csv leaves out the quiet period's final syncs."""
    def write_csv(records: Any, path: Any) -> Any:
        return original([r for r in records if not r.final], path)
    return write_csv


def percent_off_by_ten(original: Fn) -> Fn:
    """`fmt_percent`: a rate shown as a percentage is ten times too small (x10 instead of x100)."""
    def fmt_percent(rate: float | None) -> str:
        return original(None if rate is None else rate / 10)
    return fmt_percent


def old_body_kept(original: Fn) -> Fn:
    """`PageRows.add`: a changed row the device already holds gets its new version, but the device
    keeps the body it had (the contents digest of the old one)."""
    def add(self: Any, values: Any) -> None:
        from simulator.device.store import unpack

        held, start = self.engine.store.ids(self.pt.table), len(self.ids)
        original(self, values)
        for i in range(start, len(self.ids)):
            packed = held.get(self.ids[i])
            if packed is not None and unpack(packed)[2]:
                self.digests[i] = unpack(packed)[2]
    return add
