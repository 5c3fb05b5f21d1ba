"""Offline edits waiting for upload. Nothing leaves the outbox until the server has answered it.

An update of a row whose create or update is still waiting (not sent yet) is merged into it: the
row's pending changes go up as one operation, as offline apps keep one pending change per record.
Uploads go in groups. A group holds at most one op per row, so every op is sent with the version
the device's own earlier write of that row produced (`chain`): a device's own write is never a
conflict. A group, once sent, is sent again unchanged until it is answered, so a re-sent `$batch`
keeps its idempotency key even if new edits arrived after a lost answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

OpKind = Literal["create", "update", "delete"]


@dataclass(slots=True)
class Op:
    """One edit: its id doubles as the idempotency key, so a retried upload is applied once."""

    op_id: str
    kind: OpKind
    table: str
    entity_set: str
    row_id: str
    base_version: int | None  # the server version the edit was made on (None: created offline)
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Added:
    """What queuing an edit did: merged it into a waiting op of its row, or cancelled ops (a delete
    of a row created offline and never sent cancels the create, its updates and itself)."""

    merged_into: Op | None = None
    cancelled: tuple[Op, ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    """Ops sent together (one `$batch`, or one request) under one idempotency key."""

    key: str
    ops: list[Op]


class Outbox:
    """FIFO of pending ops, indexed by row. A delete of a row created offline cancels the create and
    its updates. Every operation costs time in the ops it touches, not in the outbox's length (a
    device may queue 10,000 edits offline)."""

    __slots__ = ("_ops", "_rows", "_sent")

    def __init__(self) -> None:
        self._ops: dict[str, Op] = {}  # op id -> op, oldest first
        self._rows: dict[tuple[str, str], list[Op]] = {}  # (table, row id) -> its pending ops, oldest first
        self._sent: Group | None = None  # sent and not answered yet

    def add(self, op: Op) -> Added:
        """Queue an edit: merged into the row's waiting create or update, cancelling, or appended."""
        row = self._rows.get((op.table, op.row_id), [])
        last = row[-1] if row else None
        if op.kind == "update" and last is not None and last.kind != "delete" and not self._in_flight(last):
            last.payload = {**(last.payload or {}), **(op.payload or {})}
            return Added(merged_into=last)
        if op.kind == "delete" and row and row[0].kind == "create" and not self._in_flight(row[0]):
            for o in row:
                del self._ops[o.op_id]
            del self._rows[(op.table, op.row_id)]
            return Added(cancelled=(*row, op))
        self._ops[op.op_id] = op
        self._rows.setdefault((op.table, op.row_id), []).append(op)
        return Added()

    def next_group(self, limit: int) -> Group | None:
        """The group to send: the unanswered one again, else up to `limit` ops, one per row, oldest first."""
        if self._sent is not None:
            return self._sent
        if not self._ops:
            return None
        ops: list[Op] = []
        for op in self._ops.values():
            if len(ops) == limit:
                break
            if self._rows[(op.table, op.row_id)][0] is op:  # the oldest op of its row
                ops.append(op)
        key = ops[0].op_id if len(ops) == 1 else "batch_" + hashlib.sha1(
            "".join(o.op_id for o in ops).encode()).hexdigest()[:24]
        self._sent = Group(key, ops)
        return self._sent

    def done(self, group: Group) -> None:
        """The group was answered (each op applied, conflicted or rejected): drop its ops."""
        for op in group.ops:
            if self._ops.pop(op.op_id, None) is not None:
                row = self._rows[(op.table, op.row_id)]
                row.remove(op)
                if not row:
                    del self._rows[(op.table, op.row_id)]
        if self._sent is group:
            self._sent = None

    def chain(self, table: str, row_id: str, version: int) -> None:
        """The device's own write of a row produced `version`: later edits of that row build on it."""
        for op in self._rows.get((table, row_id), ()):
            op.base_version = version

    def created_offline(self, table: str, row_id: str) -> bool:
        """Whether the row was created on the device and its create is still pending."""
        row = self._rows.get((table, row_id))
        return row is not None and row[0].kind == "create"

    def _in_flight(self, op: Op) -> bool:
        return self._sent is not None and op in self._sent.ops

    def pending(self) -> list[Op]:
        return list(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)
