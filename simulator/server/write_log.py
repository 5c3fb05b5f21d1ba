"""The server's side of the run's ledger: every write applied, every device write refused, and every
request sent while its user was told to wait (GET /_syncsim/ledger).

These are facts, not verdicts: who wrote which row version with which base version, and the store's
version when a device's edit was refused. The runner's ledger (simulator/ledger) recomputes conflict
counts, exactly-once delivery and the rest from them and from what devices recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent a write: the device (x-syncsim-device-id) and its op (x-syncsim-op-id), if any."""

    device: str | None = None
    op: str | None = None
    base: int | None = None  # x-syncsim-base-version: the version a last-writer-wins write was based on


@dataclass(slots=True)
class Write:
    """One applied write: the row version it made (None for a delete: `version` is then the
    store's version of the delete), the If-Match version it carried, and who sent it."""

    version: int
    table: str
    row_id: str
    kind: str  # create, update, delete, file
    user: str
    device: str | None
    op: str | None
    base: int | None  # If-Match version (None: none, or "*")
    conflict: bool  # it overwrote a newer version (conflict detection off)
    digest: int | None  # protocol.odata.body_digest of the body (creates and updates)
    stored: int | None = None  # protocol.odata.values_digest of the row as stored, for the body's plain columns

    def to_list(self) -> list[Any]:
        return [self.version, self.table, self.row_id, self.kind, self.user, self.device, self.op, self.base,
                self.conflict, self.digest, self.stored]


@dataclass(slots=True)
class Refusal:
    """A device write the server refused, and the store's version at that moment."""

    at_version: int
    table: str
    row_id: str
    user: str
    device: str | None
    op: str | None
    status: int
    code: str

    def to_list(self) -> list[Any]:
        return [self.at_version, self.table, self.row_id, self.user, self.device, self.op, self.status, self.code]


@dataclass(slots=True)
class EarlyRequest:
    """A request that arrived while its client was told to wait (a 429's Retry-After not yet over)."""

    user: str
    device: str | None  # the client: a device (x-syncsim-device-id), or None for any other
    route: str
    early_s: float  # scenario seconds before the end of the wait


@dataclass(slots=True)
class ViewChange:
    """A privilege change moved rows out of (and into) a user's view of a table at `version`."""

    version: int
    user: str
    table: str
    left: list[str]
    entered: list[str]


@dataclass(slots=True)
class WriteLog:
    """Everything the ledger needs from the server. `seed_version`: rows at or below it are seeded."""

    seed_version: int
    writes: list[Write] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    early: list[EarlyRequest] = field(default_factory=list)
    views: list[ViewChange] = field(default_factory=list)
    wait_until: dict[tuple[int, str | None], float] = field(default_factory=dict)  # (user, device) -> end of wait

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed_version": self.seed_version,
            "write_fields": ["version", "table", "row_id", "kind", "user", "device", "op", "base", "conflict",
                             "digest", "stored"],
            "writes": [w.to_list() for w in self.writes],
            "refusal_fields": ["at_version", "table", "row_id", "user", "device", "op", "status", "code"],
            "refusals": [r.to_list() for r in self.refusals],
            "early_requests": [[e.user, e.device, e.route, e.early_s] for e in self.early],
            "view_changes": [[v.version, v.user, v.table, v.left, v.entered] for v in self.views],
        }
