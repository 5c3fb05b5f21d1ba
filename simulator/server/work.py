"""What the request being served has done so far (rows read or written), for the server model
(service.py). A context variable, so the handlers and the write path count rows without being handed
the request: the back office and other tasks outside a request count nothing."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class Work:
    """What one request did: its kind, and rows read or written (the handlers add to it)."""

    kind: str
    rows: int = 0
    charged: bool = False  # its cost was spent (and its place given up)
    started: float = 0.0  # wall seconds its handler started (real time, measuring)


CURRENT: ContextVar[Work | None] = ContextVar("syncsim_work", default=None)
"""The request being served by this task."""


def count_rows(rows: int) -> None:
    """The current request read or wrote `rows` rows (nothing outside a modelled request)."""
    work = CURRENT.get()
    if work is not None:
        work.rows += rows
