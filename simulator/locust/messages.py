"""What the coordinator and the device hosts tell each other, over Locust's messages.

Each message is a small dataclass with its Locust message type (`kind`, sent as `syncsim_<kind>`)
and plain-data fields, so a handler reads `Lease.of(msg)` instead of indexing a dict, and a typo in a
field is a type error, not a KeyError on another machine. DevicePart travels as `Part` (its own wire
form, parts.py).

    coordinator -> every host:   Run (where the server is, the run's clock), Round (n), HandIn
    host -> coordinator:         Lease (a device of a class, please), Release (a user stopped),
                                 RoundDone (n), Part (its devices' records and ends), Records (live table)
    coordinator -> one host:     Leased (the device, or why not)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

M = TypeVar("M", bound="Message")


@dataclass(frozen=True, slots=True)
class Message:
    kind: ClassVar[str]

    def data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls: type[M], msg: Any) -> M:
        """The message from a Locust message (its `data`)."""
        return cls(**(msg.data or {}))


@dataclass(frozen=True, slots=True)
class Run(Message):
    """A run started: its server (URL, admin key), its clock as read at wall time `wall`, its origin,
    and the scenario's fingerprint (a worker with another scenario refuses to join)."""

    kind: ClassVar[str] = "run"
    url: str
    key: str
    time_scale: float
    now: float
    wall: float
    origin: float
    scenario: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Lease(Message):
    kind: ClassVar[str] = "lease"
    user_class: str
    req: int


@dataclass(frozen=True, slots=True)
class Leased(Message):
    kind: ClassVar[str] = "leased"
    req: int
    name: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Release(Message):
    kind: ClassVar[str] = "release"
    name: str


@dataclass(frozen=True, slots=True)
class Round(Message):
    """Sync every device once (the quiet period's n-th round)."""

    kind: ClassVar[str] = "round"
    n: int


@dataclass(frozen=True, slots=True)
class RoundDone(Message):
    kind: ClassVar[str] = "round_done"
    n: int


@dataclass(frozen=True, slots=True)
class HandIn(Message):
    kind: ClassVar[str] = "hand_in"


@dataclass(frozen=True, slots=True)
class Part(Message):
    """A host's devices, in DevicePart's wire form (parts.py)."""

    kind: ClassVar[str] = "part"
    wire: dict[str, Any]

    def data(self) -> dict[str, Any]:
        return self.wire

    @classmethod
    def of(cls, msg: Any) -> Part:
        return cls(dict(msg.data))


@dataclass(frozen=True, slots=True)
class Records(Message):
    """Records and first syncs made since the last time (asdict form), for the live table."""

    kind: ClassVar[str] = "records"
    records: list[dict[str, Any]] = field(default_factory=list)
    firsts: list[dict[str, Any]] = field(default_factory=list)
