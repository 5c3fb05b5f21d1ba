"""Offline edits waiting for upload. Nothing leaves the outbox until the server has answered it.

Uploads go in groups. A group holds at most one op per row, so every op is sent with the version
the device's own earlier edit of that row produced (`chain`): a device's own write is never a
conflict. A group, once sent, is sent again unchanged until it is answered, so a re-sent `$batch`
keeps its idempotency key even if new edits arrived after a lost answer.
"""

from __future__ import annotations

import hashlib
from collections import deque
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
class Group:
    """Ops sent together (one `$batch`, or one request) under one idempotency key."""

    key: str
    ops: list[Op]


class Outbox:
    """FIFO of pending ops. A delete of a row created offline cancels the create and its updates."""

    __slots__ = ("_ops", "_sent")

    def __init__(self) -> None:
        self._ops: deque[Op] = deque()
        self._sent: Group | None = None  # sent and not answered yet

    def add(self, op: Op) -> list[Op]:
        """Queue an op; returns the ops it cancelled (a delete of a row created offline and not sent)."""
        if op.kind == "delete" and self.created_offline(op.row_id) and not self._in_flight(op.row_id):
            cancelled = [o for o in self._ops if o.row_id == op.row_id]
            self._ops = deque(o for o in self._ops if o.row_id != op.row_id)
            return [*cancelled, op]
        self._ops.append(op)
        return []

    def next_group(self, limit: int) -> Group | None:
        """The group to send: the unanswered one again, else up to `limit` ops, one per row, oldest first."""
        if self._sent is not None:
            return self._sent
        if not self._ops:
            return None
        ops: list[Op] = []
        rows: set[tuple[str, str]] = set()
        for op in self._ops:
            if len(ops) == limit:
                break
            if (op.table, op.row_id) not in rows:
                rows.add((op.table, op.row_id))
                ops.append(op)
        key = ops[0].op_id if len(ops) == 1 else "batch_" + hashlib.sha1(
            "".join(o.op_id for o in ops).encode()).hexdigest()[:24]
        self._sent = Group(key, ops)
        return self._sent

    def done(self, group: Group) -> None:
        """The group was answered (each op applied, conflicted or rejected): drop its ops."""
        ids = {o.op_id for o in group.ops}
        self._ops = deque(o for o in self._ops if o.op_id not in ids)
        if self._sent is group:
            self._sent = None

    def chain(self, table: str, row_id: str, version: int) -> None:
        """The device's own write of a row produced `version`: later edits of that row build on it."""
        for op in self._ops:
            if op.row_id == row_id and op.table == table:
                op.base_version = version

    def created_offline(self, row_id: str) -> bool:
        return any(o.kind == "create" and o.row_id == row_id for o in self._ops)

    def _in_flight(self, row_id: str) -> bool:
        return self._sent is not None and any(o.row_id == row_id for o in self._sent.ops)

    def pending(self) -> list[Op]:
        return list(self._ops)

    def __len__(self) -> int:
        return len(self._ops)
