"""Every planted bug, one line each: the bug, where it is planted, the smallest scenario that reaches
the path it breaks, and the invariant that must name it. A new invariant or a new path adds a line
here (and, for a new kind of mistake, a few lines in bugs.py).

`SCENARIOS` names the scenarios the bugs run on: a shipped scenario file, with changes given as
`api.change` field paths. Each is also run without a bug, and must pass: a bug is caught only if
the same run without it is clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mutants import bugs
from mutants.bugs import Bug

SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "smoke": ("smoke.yaml", {}),
    # deltas of more than one page: four rows a page
    "smoke, pages of 4": ("smoke.yaml", {"user_classes[technician].behaviour.page_size": 4,
                                         "user_classes[manager].behaviour.page_size": 4}),
    # one write in five applied and its answer lost: the device sends it again
    "smoke, lost answers": ("smoke.yaml", {"server.faults.lose_answer_rate": 0.2}),
    # 25 requests a minute per user: every device meets 429s and must wait
    "smoke, throttled": ("smoke.yaml", {"server.limits.requests": 25, "server.limits.window_s": 60}),
    # half the requests answered 503: first syncs fail and are tried again (more than one attempt)
    "smoke, flaky server": ("smoke.yaml", {"server.faults.error_rate": 0.6, "duration_s": 1800}),
    # technicians' phones hold 150 KB: their first syncs stop with STORAGE_FULL
    "smoke, small phones": ("smoke.yaml", {"user_classes[technician].devices": [{"storage_mb": 0.15}]}),
    # hot work orders with conflict detection on: stale uploads are refused with 412
    "conflicts": ("conflicts.yaml", {}),
    # the back office deletes rows that devices are editing offline
    "smoke, deletes": ("smoke.yaml", {"back_office.mix": {"update": 0.5, "create": 0.1, "delete": 0.4},
                                      "back_office.writes_per_s": 1.0}),
}



@dataclass(frozen=True, slots=True)
class Mutant:
    name: str  # the bug, as a reader would say it
    scenario: str  # a key of SCENARIOS
    where: str  # "module:attribute" (dotted below the module), as `plant` patches it
    bug: Bug
    caught_by: str  # the invariant (summary.json `ledger.invariants` key) that must name it
    gap: str | None = None  # not caught yet, and what would catch it: reported, does not fail the suite
    also: tuple[tuple[str, Bug], ...] = ()  # more places the same bug changes


MUTANTS: tuple[Mutant, ...] = (
    Mutant("server answers an update without writing it (1 in 10)", "smoke",
           "simulator.server.mutations:Writer._update", bugs.write_answered_not_applied(10), "nothing_lost"),
    Mutant("server drops an update's values (1 in 5)", "smoke",
           "simulator.server.mutations:Writer._values", bugs.values_dropped(5), "writes_keep_their_values"),
    Mutant("deltas carry no tombstones", "smoke, deletes",
           "simulator.server.handlers.changes:delta_items", bugs.no_tombstones, "deleted_rows_stay_deleted"),
    Mutant("a delta's continuation page skips a row", "smoke, pages of 4",
           "simulator.server.handlers.changes:_position", bugs.continuation_skips_a_row, "devices_hold_their_view"),
    Mutant("a revoked privilege leaves rows on devices", "smoke",
           "simulator.server.privileges:change_privilege", bugs.view_changes_forgotten,
           "revoked_rows_gone_after_next_sync"),
    Mutant("server forgets idempotency keys", "smoke, lost answers",
           "simulator.server.middlewares:idempotency", bugs.idempotency_forgotten, "exactly_once"),
    Mutant("deleted rows come back on If-Match: *", "smoke, deletes",
           "simulator.server.mutations:Writer._update", bugs.deleted_rows_come_back, "deleted_rows_stay_deleted"),
    Mutant("device skips removals", "smoke, deletes",
           "simulator.device.sync:PageRows.commit", bugs.removals_ignored, "deleted_rows_stay_deleted"),
    Mutant("device keeps a changed row's old body", "smoke",
           "simulator.device.sync:PageRows.add", bugs.old_body_kept, "devices_hold_their_view"),
    Mutant("device loses an edit (1 in 10)", "smoke",
           "simulator.device.outbox:Outbox.add", bugs.edit_dropped(10), "nothing_lost"),
    Mutant("device conflicts with its own edits", "conflicts",
           "simulator.device.outbox:Outbox.chain", bugs.no_chaining, "conflicts_match_ledger",
           also=(("simulator.device.outbox:Outbox.add", bugs.no_merging),)),
    Mutant("device sends no idempotency key", "smoke, lost answers",
           "simulator.device.client:ApiClient.call", bugs.no_idempotency_key, "exactly_once"),
    Mutant("device uploads other values than the edit it made", "smoke",
           "simulator.device.upload:_request", bugs.body_not_the_edit, "no_phantom_writes"),
    Mutant("device stops sending at its first delete", "smoke",
           "simulator.device.outbox:Outbox.next_group", bugs.deletes_never_sent, "outboxes_drain"),
    Mutant("device ignores Retry-After", "smoke, throttled",
           "simulator.device.client:_retry_after", bugs.retry_after_ignored, "throttling_honoured"),
    Mutant("every applied upload counted as a conflict", "smoke",
           "simulator.device.sync:SyncEngine._apply_outcome", bugs.every_write_a_conflict, "conflicts_match_ledger"),
    Mutant("a 412 not counted as a conflict", "conflicts",
           "simulator.device.sync:SyncEngine._apply_outcome", bugs.refusals_not_conflicts, "conflicts_match_ledger"),
    Mutant("first sync timed from its last attempt", "smoke, flaky server",
           "simulator.device.first_sync:FirstSyncTracker.result", bugs.timed_from_last_attempt,
           "first_sync_durations_match"),
    Mutant("device storage quota off", "smoke, small phones",
           "simulator.device.store:LocalStore.reserve", bugs.quota_off, "tokens_forward_storage_within_quota"),
    Mutant("downloaded file bytes garbled", "smoke",
           "simulator.device.store:LocalStore.add_file_bytes", bugs.file_bytes_garbled, "devices_hold_their_view"),
    Mutant("report's p95 is the mean", "smoke",
           "simulator.reports.summary:stats", bugs.p95_is_the_mean, "report_matches_ledger"),
    Mutant("report leaves out failed syncs", "smoke, small phones",
           "simulator.reports.summary:_ClassGroup.add", bugs.failed_syncs_dropped, "report_matches_ledger"),
    Mutant("syncs.csv leaves out final syncs", "smoke",
           "simulator.reports.files:write_csv", bugs.csv_drops_final_syncs, "report_matches_ledger"),
    Mutant("conflict and rejection rates shown ten times too small", "conflicts",
           "simulator.reports.console:fmt_percent", bugs.percent_off_by_ten, "report_matches_ledger"),
)
