"""The paths a run reached that the ledger's invariants exist for: a run that never reached one
checked nothing there, however green its table. `make chaos` must reach every one
(tests/test_chaos.py); the console, summary.json (`ledger.paths`, `ledger.not_reached`) and the
HTML report show the count of each, and "not reached" where it is 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.ledger.journal import Journal

STORAGE_FULL = "STORAGE_FULL"


def paths_reached(journal: Journal, counters: Mapping[str, Any], invariants: Mapping[str, Mapping[str, Any]]
                  ) -> dict[str, int]:
    """How often the run went down each path (0: not reached)."""
    first_records = [r for r in journal.records if r.mode == "FIRST_SYNC"]
    return {
        "429s met by devices": journal.throttled,
        "answers lost after a write was applied": int((counters.get("faults") or {}).get("lose_answer", 0)),
        "first syncs of more than one attempt": sum(1 for f in journal.first_syncs.values()
                                                    if f.finished and f.attempts > 1),
        "first syncs cut by airplane mode and resumed": len({r.device for r in first_records if r.restarts}),
        "first syncs that read a cut answer again": sum(1 for f in journal.first_syncs.values() if f.refetched_bytes),
        "delta continuation pages": int(counters.get("delta_continuations", 0)),
        "rows revoked from a device's view": int(invariants["revoked_rows_gone_after_next_sync"]["checked"]),
        "rows deleted on the server": int(invariants["deleted_rows_stay_deleted"]["checked"]),
        "syncs stopped by a full device": sum(1 for r in journal.records if r.error_code == STORAGE_FULL),
    }
