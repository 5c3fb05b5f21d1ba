"""The run's ledger: an independent record of what happened, and the invariants checked against it.

`Journal` records what devices did from the engine's events; the server keeps its write log
(GET /_syncsim/ledger); `check_run` recomputes conflicts and first-sync times from those facts and
checks every invariant after the quiet period. See docs/ledger.md.
"""

from simulator.ledger.checks import DeviceEnd, Invariant, check_run
from simulator.ledger.journal import Intent, Journal

__all__ = ["DeviceEnd", "Intent", "Invariant", "Journal", "check_run"]
