"""Offline edits waiting for upload. Nothing leaves the outbox until the server has answered it."""

from __future__ import annotations

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


class Outbox:
    """FIFO of pending ops. A delete of a row created offline cancels the create and its updates."""

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: deque[Op] = deque()

    def add(self, op: Op) -> None:
        if op.kind == "delete" and any(o.kind == "create" and o.row_id == op.row_id for o in self._ops):
            self._ops = deque(o for o in self._ops if o.row_id != op.row_id)
            return
        self._ops.append(op)

    def pending(self, limit: int | None = None) -> list[Op]:
        ops = list(self._ops)
        return ops if limit is None else ops[:limit]

    def done(self, ops: list[Op]) -> None:
        """Remove answered ops (applied, conflicted or rejected)."""
        ids = {o.op_id for o in ops}
        self._ops = deque(o for o in self._ops if o.op_id not in ids)

    def created_offline(self, row_id: str) -> bool:
        return any(o.kind == "create" and o.row_id == row_id for o in self._ops)

    def __len__(self) -> int:
        return len(self._ops)
