"""The run's invariants, checked after the quiet period from the server's write log, what devices
recorded (the journal) and how devices ended. Each violation names device, row and operation.

Conflicts and first-sync times are recomputed here from facts (who wrote which version when; when
each request started and ended) and compared with the figures devices reported.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.check import DeviceCheck, compare
from simulator.ledger.journal import Intent, Journal

EXAMPLES = 5
FIRST_SYNC_TOLERANCE_S = 0.001  # seconds: float rounding only


@dataclass(slots=True)
class DeviceEnd:
    """How a device ended the run, as the runner read it: ops still in its outbox, what it holds."""

    name: str
    user: str
    pending: list[str]  # op ids still in the outbox
    rows: dict[str, dict[str, int]]  # table -> row id -> version
    files: dict[str, tuple[int, int]]  # key -> (bytes held, CRC-32)
    token_regressions: list[str] = field(default_factory=list)
    stopped: str | None = None  # why it stopped syncing (STORAGE_FULL), if it did
    checked: bool = True  # False: left out of the view checks (stopped, or unfinished final syncs)


@dataclass(slots=True)
class Invariant:
    """One invariant's result: how many things were checked, how many broke it, the first examples."""

    checked: int = 0
    violations: int = 0
    examples: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.violations += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "violations": self.violations, "examples": self.examples}


@dataclass(slots=True)
class _Write:
    version: int
    table: str
    row_id: str
    kind: str
    user: str
    device: str | None
    op: str | None
    base: int | None
    conflict: bool
    digest: int | None
    stored: int | None = None


class _ServerFacts:
    """The server's ledger (GET /_syncsim/ledger), indexed for the checks."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.seed_version: int = raw["seed_version"]
        self.writes = [_Write(*w) for w in raw["writes"]]
        self.by_op: dict[str, list[_Write]] = defaultdict(list)
        self.by_row: dict[tuple[str, str], list[_Write]] = defaultdict(list)
        for w in self.writes:
            if w.op is not None:
                self.by_op[w.op].append(w)
            self.by_row[(w.table, w.row_id)].append(w)
        for writes in self.by_row.values():
            writes.sort(key=lambda w: w.version)
        fields = raw["refusal_fields"]
        self.refused_at = {r[fields.index("op")]: r[fields.index("at_version")] for r in raw["refusals"]}
        self.early: list[list[Any]] = raw["early_requests"]
        self.current: dict[str, dict[str, int]] = raw["current"]
        self.deleted: dict[str, list[str]] = raw["deleted"]
        self.views: list[list[Any]] = raw["view_changes"]

    def others_between(self, intent: Intent, low: int, high: int, inclusive: bool) -> list[_Write]:
        """Writes to the intent's row by anyone but its device with low < version < high (or <= high)."""
        writes = self.by_row.get((intent.table, intent.row_id), [])
        versions = [w.version for w in writes]
        end = bisect_right(versions, high) if inclusive else bisect_left(versions, high)
        return [w for w in writes[bisect_right(versions, low):end] if w.device != intent.device]


def check_run(journal: Journal, server: dict[str, Any], devices: list[DeviceEnd],
              expected: dict[str, dict[str, Any]], views: Mapping[str, DeviceCheck] | None = None) -> dict[str, Any]:
    """Every invariant of the run. `expected`: device name -> the server's snapshot for its user
    ({"tables": ..., "files": ...}), for the devices that are checked; `views`: the end-of-run
    check's row comparison per device, when already made (else it is made here)."""
    facts = _ServerFacts(server)
    ends = {d.name: d for d in devices}
    conflicts, recomputed = _conflicts_match(journal, facts)
    results = {
        "nothing_lost": _nothing_lost(journal, facts, ends),
        "no_phantom_writes": _no_phantom_writes(journal, facts),
        "writes_keep_their_values": _writes_keep_values(journal, facts),
        "exactly_once": _exactly_once(journal, facts),
        "outboxes_drain": _outboxes_drain(devices),
        "devices_hold_their_view": _devices_hold_their_view(devices, expected, views or {}),
        "conflicts_match_ledger": conflicts,
        "first_sync_durations_match": _first_syncs_match(journal),
        "revoked_rows_gone_after_next_sync": _revoked_gone(journal, facts, devices),
        "deleted_rows_stay_deleted": _deleted_stay_deleted(facts, devices),
        "tokens_forward_storage_within_quota": _tokens_and_storage(journal, devices),
        "throttling_honoured": _throttling(facts, journal),
    }
    reported = sum(r.conflicts for r in journal.records)
    uploaded = sum(r.uploaded for r in journal.records)
    return {
        "passed": all(r.violations == 0 for r in results.values()),
        "invariants": {name: r.to_dict() for name, r in results.items()},
        "not_exercised": [name for name, r in results.items() if r.checked == 0],
        "conflicts": {"reported": reported, "ledger": recomputed, "uploaded": uploaded,
                      "reported_rate": round(reported / uploaded, 4) if uploaded else 0.0,
                      "ledger_rate": round(recomputed / uploaded, 4) if uploaded else 0.0},
        "kept_in_stopped_outboxes": sum(len(d.pending) for d in devices if d.stopped),
        "edits": _edit_counts(journal),
    }


def _edit_counts(journal: Journal) -> dict[str, Any]:
    """Edits the devices made: merged into a waiting op of their row, cancelled, most by one device."""
    per_device = Counter(i.device for i in journal.intents.values())
    busiest = per_device.most_common(1)
    return {"made": len(journal.intents),
            "merged": sum(1 for i in journal.intents.values() if i.merged_into is not None),
            "cancelled": sum(1 for i in journal.intents.values() if i.cancelled),
            "most_by_one_device": {"device": busiest[0][0], "edits": busiest[0][1]} if busiest else None}


def _nothing_lost(journal: Journal, facts: _ServerFacts, ends: dict[str, DeviceEnd]) -> Invariant:
    """Every accepted edit was applied, or seen refused (conflict, rejection), or is still queued."""
    out = Invariant()
    pending = {op for d in ends.values() for op in d.pending}
    for intent in journal.intents.values():
        out.checked += 1
        where = f"{intent.device} op {intent.op} ({intent.kind} {intent.table}/{intent.row_id})"
        if intent.merged_into is not None:
            carrier = journal.intents.get(intent.merged_into)
            if carrier is None or not (carrier.settled or carrier.op in pending):
                out.fail(f"{where}: merged into op {intent.merged_into}, which was lost")
        elif not intent.settled:
            if intent.op not in pending:
                out.fail(f"{where}: neither answered nor in the outbox: lost")
        elif not intent.cancelled and intent.status < 300 and not facts.by_op.get(intent.op):
            out.fail(f"{where}: the device saw {intent.status}, the server's log has no such write")
    return out


def _no_phantom_writes(journal: Journal, facts: _ServerFacts) -> Invariant:
    """Every device write is an edit some device made, with its content; every row version written
    during the run comes from a logged write."""
    out = Invariant()
    for w in facts.writes:
        if w.device is None:
            continue
        out.checked += 1
        intent = journal.intents.get(w.op or "")
        where = f"{w.device} wrote {w.table}/{w.row_id} v{w.version} (op {w.op})"
        if intent is None or intent.device != w.device:
            out.fail(f"{where}: no edit of that device has this op id")
        elif w.digest is not None and intent.digest is not None and w.digest != intent.digest:
            out.fail(f"{where}: the content differs from the edit the device made")
    written = {(w.table, w.row_id, w.version) for w in facts.writes}
    for table, rows in facts.current.items():
        for row_id, version in rows.items():
            out.checked += 1
            if (table, row_id, version) not in written:
                out.fail(f"server row {table}/{row_id} v{version}: written by nobody in the write log")
    return out


def _writes_keep_values(journal: Journal, facts: _ServerFacts) -> Invariant:
    """The row version a device's create or update made holds the values the device sent: every
    plain column of its body, as the server stored them (values_digest of both)."""
    out = Invariant()
    for w in facts.writes:
        intent = journal.intents.get(w.op or "") if w.device is not None else None
        if intent is None or w.kind not in ("create", "update") or w.stored is None or intent.values is None:
            continue
        out.checked += 1
        if w.stored != intent.values:
            out.fail(f"{w.device} op {w.op} ({w.kind} {w.table}/{w.row_id}) made v{w.version}: the stored row does "
                     "not hold the values the device sent")
    return out


def _exactly_once(journal: Journal, facts: _ServerFacts) -> Invariant:
    """An op is applied at most once, and the device got the version of that one write."""
    out = Invariant()
    for op, writes in facts.by_op.items():
        out.checked += 1
        if len(writes) > 1:
            out.fail(f"op {op} on {writes[0].table}/{writes[0].row_id}: applied {len(writes)} times "
                     f"(v{', v'.join(str(w.version) for w in writes)})")
            continue
        intent = journal.intents.get(op)
        if intent is not None and intent.settled and intent.kind != "delete" and intent.version not in (
                None, writes[0].version):
            out.fail(f"{intent.device} op {op} ({intent.table}/{intent.row_id}): the device was told "
                     f"v{intent.version}, the write made v{writes[0].version}")
    for op in journal.settled_twice:
        out.fail(f"op {op}: answered twice on the device")
    return out


def _outboxes_drain(devices: list[DeviceEnd]) -> Invariant:
    out = Invariant()
    for d in devices:
        out.checked += 1
        if d.pending and not d.stopped:
            out.fail(f"{d.name}: {len(d.pending)} edits never delivered (first: op {d.pending[0]})")
    return out


def _devices_hold_their_view(devices: list[DeviceEnd], expected: dict[str, dict[str, Any]],
                             views: Mapping[str, DeviceCheck]) -> Invariant:
    """Rows and versions (the end-of-run check's comparison), and files byte for byte (size and
    CRC-32), equal the server's view."""
    out = Invariant()
    for d in devices:
        want = expected.get(d.name)
        if not d.checked or want is None:
            continue
        out.checked += 1
        view = views.get(d.name) or compare(d.name, d.rows, want["tables"], 0)
        for text in view.examples:
            out.fail(f"{d.name} {text}")
        out.violations += view.missing + view.extra + view.stale + view.altered - len(view.examples)
        files = {k: tuple(v) for k, v in want["files"].items()}
        for key in sorted(set(files) | set(d.files)):
            if files.get(key) != d.files.get(key):
                out.fail(f"{d.name} file {key}: device (bytes, crc) {d.files.get(key)}, server {files.get(key)}")
    return out


def _conflicts_match(journal: Journal, facts: _ServerFacts) -> tuple[Invariant, int]:
    """An upload is a conflict exactly when another writer changed the row after the device's base
    version (and before the upload was applied or refused); device and ledger agree op by op.
    Returns the result and the number of conflicts recomputed from the ledger."""
    out, recomputed = Invariant(), 0
    for intent in journal.intents.values():
        if not intent.settled or intent.cancelled or intent.merged_into is not None or not (
                intent.status < 300 or intent.status == 412):
            continue
        out.checked += 1
        device_says = intent.status == 412 or intent.conflict
        ledger_says, why = _ledger_conflict(intent, facts)
        recomputed += ledger_says
        if device_says != ledger_says:
            out.fail(f"{intent.device} op {intent.op} ({intent.kind} {intent.table}/{intent.row_id}, base "
                     f"v{intent.base}): device counted {'a' if device_says else 'no'} conflict, ledger: {why}")
    for device, start, count, ops in journal.record_ops:  # each sync's reported count, op by op
        conflicted = [op for op in ops if (i := journal.intents.get(op)) is not None and _counts_as_conflict(i)]
        if count != len(conflicted):
            out.fail(f"{device} sync of start {start:.3f} (syncs.csv): reported {count} conflicts, its answered ops had "
                     f"{len(conflicted)} ({', '.join(conflicted[:3]) or 'none'} of {len(ops)} answered)")
    reported = sum(r.conflicts for r in journal.records)
    if reported != recomputed:
        out.fail(f"reported conflicts {reported} != {recomputed} recomputed from the ledger")
    return out, recomputed


def _counts_as_conflict(intent: Intent) -> bool:
    """What a device counts as a conflict: an applied upload that overwrote another writer's change,
    or a 412 (server wins) to an update or delete."""
    return (intent.status < 300 and intent.conflict) or (intent.status == 412 and intent.kind != "create")


def _ledger_conflict(intent: Intent, facts: _ServerFacts) -> tuple[bool, str]:
    if intent.base is None or intent.kind == "create":
        return False, "no base version, nothing to conflict with"
    if intent.status == 412:
        at = facts.refused_at.get(intent.op)
        if at is None:
            return False, "no refusal of this op in the server's log"
        others = facts.others_between(intent, intent.base, at, inclusive=True)
    else:
        own = facts.by_op.get(intent.op)
        if not own:
            return False, "no write of this op in the server's log"
        others = facts.others_between(intent, intent.base, own[0].version, inclusive=False)
    if others:
        w = others[0]
        return True, f"changed by {w.device or w.user} at v{w.version}"
    return False, "no other writer changed the row after its base"


def _first_syncs_match(journal: Journal) -> Invariant:
    """A finished first sync lasts from the first request of its first attempt (as the request events
    say) to the end of the attempt that completed it (as its sync record says), on the device's
    lived timeline: not from the start of its last attempt."""
    out = Invariant()
    for device, first in journal.first_syncs.items():
        span = journal.first_sync_spans.get(device)
        if not first.finished or span is None:
            continue
        out.checked += 1
        if abs(first.duration_s - span) > FIRST_SYNC_TOLERANCE_S:
            out.fail(f"{device}: first sync reported {first.duration_s:.3f} s, requests span {span:.3f} s "
                     f"({first.attempts} attempts)")
    return out


def _revoked_gone(journal: Journal, facts: _ServerFacts, devices: list[DeviceEnd]) -> Invariant:
    """After the first sync whose delta covers a privilege change (its token at or past the change's
    version), no row that left the user's view is on the device, unless it came back since (it
    entered again, or was written anew)."""
    out = Invariant()
    by_user = {d.user: d.name for d in devices}
    for version, user, table, left, _ in facts.views:
        device = by_user.get(user)
        if device is None or not left:
            continue
        for held in journal.held_after_sync.get(device, []):
            token, ids = held.get(table, (-1, frozenset()))
            if token < version:
                continue
            out.checked += 1
            back = {i for v, u, t, _, entered in facts.views if u == user and t == table and version < v <= token
                    for i in entered}
            for row_id in sorted(set(left) & ids - back):
                if not any(version < w.version <= token for w in facts.by_row.get((table, row_id), [])):
                    out.fail(f"{device} {table}/{row_id}: left {user}'s view at v{version}, still held after a "
                             f"sync up to v{token}")
    return out


def _deleted_stay_deleted(facts: _ServerFacts, devices: list[DeviceEnd]) -> Invariant:
    """A row deleted on the server is never written again (every row the write log saw deleted, also
    one that is back at the end) and no device holds a row that is deleted at the end."""
    out = Invariant()
    ever: dict[str, set[str]] = defaultdict(set)
    for table, ids in facts.deleted.items():
        ever[table].update(ids)
    for (table, row_id), writes in facts.by_row.items():
        if any(w.kind == "delete" for w in writes):
            ever[table].add(row_id)
    for table in sorted(ever):
        out.checked += len(ever[table])
        for row_id in sorted(ever[table]):
            writes = facts.by_row.get((table, row_id), [])
            deletes = [w.version for w in writes if w.kind == "delete"]
            again = [w for w in writes if deletes and w.version > deletes[0]]
            if again:
                w = again[0]
                out.fail(f"{table}/{row_id}: written again at v{w.version} by {w.device or w.user} ({w.kind}) "
                         f"after its delete at v{deletes[0]}")
        gone = set(facts.deleted.get(table, ()))
        for d in devices:
            if not d.checked:
                continue
            for row_id in sorted(gone & d.rows.get(table, {}).keys()):
                out.fail(f"{d.name} {table}/{row_id}: deleted on the server, still on the device")
    return out


def _tokens_and_storage(journal: Journal, devices: list[DeviceEnd]) -> Invariant:
    out = Invariant(checked=len(devices) + len(journal.records))
    for d in devices:
        for table in d.token_regressions:
            out.fail(f"{d.name} {table}: a delta token went backwards")
    for text in journal.over_quota:
        out.fail(f"storage over quota: {text}")
    return out


def _throttling(facts: _ServerFacts, journal: Journal) -> Invariant:
    """No device sends a request while it is told to wait (other clients are not the device's doing).
    Checked: the 429s devices met (a run where none did has nothing to honour)."""
    out = Invariant(checked=journal.throttled)
    for user, device, route, early_s in facts.early:
        if device is not None:
            out.fail(f"{device} ({user}): {route} sent {early_s:.2f} s before its Retry-After was over")
    return out
