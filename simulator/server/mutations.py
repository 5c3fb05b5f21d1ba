"""Create, update and delete rows: payload validation, privileges, etags and conflicts, undo.

Every write path (single requests, CreateMultiple / UpdateMultiple / UpsertMultiple, $batch) goes
through `Writer`. A `Writer` remembers what it changed so an all-or-nothing group (a changeset, a
bulk action) can be rolled back with `undo()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator.protocol import ErrorCode, parse_etag
from simulator.protocol.errors import CONCURRENCY_MESSAGE
from simulator.protocol.ids import new_guid
from simulator.protocol.odata import body_digest, values_digest
from simulator.scenario import ColumnDef
from simulator.server.errors import DataverseError, not_found
from simulator.server.state import ServerState
from simulator.server.store import FileInfo, LogEntry, Row, TableStore, User, lookup_key
from simulator.server.values import entity_reference, guid, invalid_property, text, typed
from simulator.server.write_log import Origin, Refusal, Write

_BIND = re.compile(r"^/?(?P<set>[A-Za-z_]\w*)\((?P<id>[0-9a-fA-F-]{36})\)$")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Undo:
    table: TableStore
    row_id: str
    prev: Row | None
    logged: list[tuple[TableStore, list[LogEntry]]]  # change-log entries the write appended, any table
    written: Write | None = None  # its write-log entry
    tombstone: Row | None = None  # the row's entry in TableStore.deleted before the write
    version: int = 0  # the store's version before the write


@dataclass(frozen=True, slots=True)
class _Note:
    """What the write log says of the operation in progress: kind, If-Match version, body digest."""

    kind: str
    row_id: str | None
    base: int | None = None
    digest: int | None = None
    columns: tuple[str, ...] | None = None  # the body's plain columns (their stored values are logged)


@dataclass(slots=True)
class WriteResult:
    row_id: str
    row: Row | None  # None after a delete
    created: bool = False
    conflict: bool = False  # it overwrote a newer version than its base (x-syncsim-base-version)


@dataclass
class Writer:
    """Applies writes for one user; `undo()` reverts everything this writer applied.

    `origin` says which device and op the next writes come from (set per request by the handlers);
    every applied write, and every refused device op, goes into the server's write log.
    """

    state: ServerState
    user: User
    origin: Origin = field(default_factory=Origin)
    _undo: list[_Undo] = field(default_factory=list)
    _note: _Note | None = None

    def at(self, origin: Origin) -> Writer:
        """The same writer, for writes sent by `origin` (a request or a $batch part)."""
        self.origin = origin
        return self

    # --- public operations ------------------------------------------------------------------
    def create(self, table: TableStore, payload: dict[str, Any], if_none_match: str | None = None) -> WriteResult:
        """POST: a new row; a client-given primary id is used (a repeat gives 412 DuplicateRecord)."""
        row_id = payload.get(table.meta.id_column) if isinstance(payload, dict) else None
        note = _Note("create", str(row_id).strip("{}").lower() if row_id else None, None, _digest(payload),
                     _columns(payload))
        return self._counted(table, lambda: self._create(table, payload), note)

    def update(
        self, table: TableStore, row_id: str, payload: dict[str, Any],
        if_match: str | None = None, if_none_match: str | None = None,
    ) -> WriteResult:
        """PATCH: update, or upsert without If-Match; If-None-Match: * means create only."""
        note = _Note("update", row_id, self._base(if_match), _digest(payload), _columns(payload))
        return self._counted(table, lambda: self._update(table, row_id, payload, if_match, if_none_match), note)

    def delete(self, table: TableStore, row_id: str, if_match: str | None = None) -> WriteResult:
        return self._counted(table, lambda: self._delete(table, row_id, if_match), _Note("delete", row_id, self._base(if_match)))

    def writable(self, table: TableStore, row_id: str, if_match: str | None = None) -> Row:
        """Check that this user may update the row (404, 403, then the etag), writing nothing."""
        note = _Note("check", row_id, self._base(if_match))
        return self._counted(table, lambda: self._writable(table, row_id, if_match), note).row  # type: ignore[return-value]

    def set_file(self, table: TableStore, row_id: str, column: str, info: FileInfo | None,
                 if_match: str | None = None) -> WriteResult:
        """Attach (or remove, with None) a row's file as a new row version, checked like an update."""
        def op() -> WriteResult:
            checked = self._writable(table, row_id, if_match)
            row = checked.row
            assert row is not None
            files = dict(row.files or {})
            if info is None:
                files.pop(column, None)
            else:
                files[column] = info
            now = self.state.clock.now()
            new = Row(row.id, self.state.store.next_version(), row.owner, row.team, now,
                      {**row.values, "modifiedon": iso(now)}, files or None)
            self._apply(table, new, checked.conflict)
            return WriteResult(row_id, new, conflict=checked.conflict)
        return self._counted(table, op, _Note("file", row_id, self._base(if_match)))

    def _writable(self, table: TableStore, row_id: str, if_match: str | None) -> WriteResult:
        row = table.rows.get(row_id)
        if row is None or not self.state.access.can_read(self.user, table, row):
            raise not_found(table.meta.logical_name, row_id)
        if not self.state.access.can_write(self.user, table, row, "update"):
            self._reject(table, "Write")
        return WriteResult(row_id, row, conflict=self._check_etag(table, row, if_match))

    def _counted(self, table: TableStore, op: Callable[[], WriteResult], note: _Note) -> WriteResult:
        """Run a write; a refusal other than a conflict counts as a rejection for this table and user.

        A refused device op is logged with the store's version at the moment of refusal."""
        self._note = note
        try:
            return op()
        except DataverseError as err:
            if err.code not in (ErrorCode.CONCURRENCY_MISMATCH, ErrorCode.DUPLICATE_RECORD):
                self.state.counters.rejections[f"{table.meta.logical_name}/{self.user.name}"] += 1
            if self.origin.op is not None:
                self.state.write_log.refusals.append(Refusal(
                    self.state.store.version, table.meta.logical_name, note.row_id or "", self.user.name,
                    self.origin.device, self.origin.op, err.status, err.code.value[2]))
            raise
        finally:
            self._note = None

    def _create(self, table: TableStore, payload: dict[str, Any]) -> WriteResult:
        values, owner, row_id = self._values(table, payload, for_create=True)
        if row_id is not None and row_id in table.rows:
            raise DataverseError(ErrorCode.DUPLICATE_RECORD, f"A record with id {row_id} already exists.")
        self._check_create(table)
        return self._insert(table, row_id or new_guid(self.state.rng), values, owner)

    def _update(self, table: TableStore, row_id: str, payload: dict[str, Any],
                if_match: str | None, if_none_match: str | None) -> WriteResult:
        row = table.rows.get(row_id)
        visible = row is not None and self.state.access.can_read(self.user, table, row)
        if if_none_match is not None and if_none_match.strip() == "*" and visible:
            raise DataverseError(ErrorCode.DUPLICATE_RECORD, "A record with matching key values already exists.")
        if row is None or not visible:
            if if_match is not None:
                raise not_found(table.meta.logical_name, row_id)
            if row is not None:
                self._reject(table, "Write")
            values, owner, _ = self._values(table, payload, for_create=True, row_id=row_id)
            self._check_create(table)
            return self._insert(table, row_id, values, owner)
        if not self.state.access.can_write(self.user, table, row, "update"):
            self._reject(table, "Write")
        conflict = self._check_etag(table, row, if_match)
        values, owner, _ = self._values(table, payload, for_create=False, row_id=row.id)
        self._check_keys(table, row.id, {**row.values, **values})
        new = Row(row.id, self.state.store.next_version(), row.owner if owner is None else owner,
                  row.team, self.state.clock.now(), {**row.values, **values}, row.files)
        if owner is not None:
            new.team = self.state.store.users[owner].team
        new.values["modifiedon"] = iso(new.modified)
        self._apply(table, new, conflict)
        return WriteResult(row_id, new, conflict=conflict)

    def _delete(self, table: TableStore, row_id: str, if_match: str | None) -> WriteResult:
        row = table.rows.get(row_id)
        if row is None or not self.state.access.can_read(self.user, table, row):
            raise not_found(table.meta.logical_name, row_id)
        if not self.state.access.can_write(self.user, table, row, "delete"):
            self._reject(table, "Delete")
        conflict = self._check_etag(table, row, if_match)
        marks, tombstone, version = self._marks(), table.deleted.get(row_id), self.state.store.version
        self.state.store.delete(table, row_id)
        written = self._log(table, row_id, self.state.store.version, "delete", conflict)
        self._undo.append(_Undo(table, row_id, row, self._logged_since(marks), written, tombstone, version))
        self.state.counters.wrote()
        return WriteResult(row_id, None, conflict=conflict)

    def undo(self) -> None:
        """Revert every write of this writer, newest first: rows, indexes, tombstones, change log, write
        log, and the store's version counter (the undone versions are given out again).

        An all-or-nothing group runs without yielding to the event loop, so no other request has
        written, or read the undone rows, in between; the counter is only wound back if no write came
        after this writer's last one, so a version is never given to two rows."""
        last = max((u.written.version for u in self._undo if u.written is not None), default=None)
        for u in reversed(self._undo):
            for table, entries in u.logged:  # first: the logs find their owners in the rows as written
                table.unlog(entries)
            current = u.table.rows.get(u.row_id)
            if current is not None:
                u.table._unindex(current)
                del u.table.rows[u.row_id]
            if u.prev is not None:
                u.table.load(u.prev)
            if u.tombstone is not None:
                u.table.deleted[u.row_id] = u.tombstone
            else:
                u.table.deleted.pop(u.row_id, None)
            if u.written is not None:
                self.state.write_log.writes.remove(u.written)
        if self._undo and self.state.store.version == last:
            start = self._undo[0].version
            self.state.store.version = start
            for refusal in reversed(self.state.write_log.refusals):  # refused mid-group: as of before it
                if refusal.at_version <= start:
                    break
                refusal.at_version = start
        self.state.counters.writes_applied -= len(self._undo)
        self._undo.clear()

    # --- internals ----------------------------------------------------------------------------
    def _insert(self, table: TableStore, row_id: str, values: dict[str, Any], owner: int | None) -> WriteResult:
        self._check_keys(table, row_id, values)
        now = self.state.clock.now()
        owner = self.user.index if owner is None else owner
        values.setdefault("createdon", iso(now))
        values["modifiedon"] = iso(now)
        row = Row(row_id, self.state.store.next_version(), owner, self.state.store.users[owner].team, now, values)
        self._apply(table, row, False, "create")
        return WriteResult(row_id, row, created=True)

    def _check_keys(self, table: TableStore, row_id: str, values: dict[str, Any]) -> None:
        """412 DuplicateRecordEntityKey when another row has these alternate-key values (before any write)."""
        clash = table.key_clash(row_id, values) if table.keys else None
        if clash is not None:
            columns = ", ".join(table.keys[clash])
            raise DataverseError(ErrorCode.DUPLICATE_KEY, f"A record that has the attribute values {columns} already "
                                 f"exists. The entity key {clash} requires that this set of attributes contains "
                                 "unique values. Select unique values and try again.")

    def _apply(self, table: TableStore, row: Row, conflict: bool, kind: str | None = None) -> None:
        """Store a row version whose number came from next_version() just now."""
        prev, marks, tombstone = table.rows.get(row.id), self._marks(), table.deleted.get(row.id)
        self.state.store.write(table, row)
        written = self._log(table, row.id, row.version, kind, conflict)
        self._undo.append(_Undo(table, row.id, prev, self._logged_since(marks), written, tombstone, row.version - 1))
        self.state.counters.wrote()

    def _log(self, table: TableStore, row_id: str, version: int, kind: str | None, conflict: bool) -> Write:
        """Append the write just applied to the server's write log."""
        note = self._note or _Note("update", row_id)
        checked = note.columns is not None and self.origin.device is not None  # the ledger checks device writes
        row = table.rows.get(row_id) if checked else None
        stored = values_digest({c: row.id if c == table.meta.id_column else row.values.get(c) for c in note.columns}
                               ) if row is not None and note.columns else None
        written = Write(version, table.meta.logical_name, row_id, kind or note.kind, self.user.name,
                        self.origin.device, self.origin.op, note.base, conflict, note.digest, stored)
        self.state.write_log.writes.append(written)
        return written

    def _marks(self) -> dict[str, int]:
        return {name: len(t.log) for name, t in self.state.store.tables.items()}

    def _logged_since(self, marks: dict[str, int]) -> list[tuple[TableStore, list[LogEntry]]]:
        """The entries each table's change log gained since `marks` (a write is synchronous)."""
        out = []
        for name, t in self.state.store.tables.items():
            if len(t.log) > marks[name]:
                out.append((t, t.log[marks[name] :]))
        return out

    def _check_create(self, table: TableStore) -> None:
        if not self.state.access.can_write(self.user, table, None, "create"):
            self._reject(table, "Create")

    def _reject(self, table: TableStore, privilege: str) -> None:
        name = table.meta.logical_name
        raise DataverseError(
            ErrorCode.PRIVILEGE_DENIED,
            f"Principal user (Id={self.user.id}, type=8) is missing prv{privilege}{name} privilege. "
            "The user does not hold the necessary privileges.",
        )

    def _base(self, if_match: str | None) -> int | None:
        """The version the write was based on: If-Match's, else x-syncsim-base-version's."""
        return _base(if_match) if if_match is not None and if_match.strip() != "*" else self.origin.base

    def _check_etag(self, table: TableStore, row: Row, if_match: str | None) -> bool:
        """If-Match naming another version: 412, always, as Dataverse (the server copy stays). Without
        one, a base version (x-syncsim-base-version) older than the row's: the write applies (last
        writer wins) and True is returned, so the answer says it overwrote. Both count as conflicts."""
        if if_match is not None and if_match.strip() != "*":
            version = parse_etag(if_match)
            if version is None:
                raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The If-Match value {if_match!r} is not a valid etag.")
            if version == row.version:
                return False
            self.state.counters.conflicts[f"{table.meta.logical_name}/{self.user.name}"] += 1
            raise DataverseError(ErrorCode.CONCURRENCY_MISMATCH, CONCURRENCY_MESSAGE)
        base = self.origin.base
        if base is None or base == row.version:
            return False
        self.state.counters.conflicts[f"{table.meta.logical_name}/{self.user.name}"] += 1
        return True

    def _values(self, table: TableStore, payload: dict[str, Any], for_create: bool,
                row_id: str | None = None) -> tuple[dict[str, Any], int | None, str | None]:
        """Validated wire values, a new owner index (or None), and the body's primary id.

        `row_id` is the row the URL names (PATCH): a primary id in the body must be that one (400
        otherwise); on an update it changes nothing, on a create (POST, an upsert) it is the new id."""
        if not isinstance(payload, dict):
            raise DataverseError(ErrorCode.BAD_PAYLOAD, "The request body must be a JSON object.")
        meta = table.meta
        values: dict[str, Any] = {}
        owner: int | None = None
        body_id: str | None = None
        for key, value in payload.items():
            if key.endswith("@odata.bind"):
                name = key[: -len("@odata.bind")]
                if name == "ownerid":
                    owner = self._bind_owner(value)
                    continue
                col = meta.column(name)
                if col is None or col.type != "lookup":
                    raise invalid_property(meta.logical_name, key)
                values[lookup_key(name)] = self._bind(col, value, key)
                continue
            if key.startswith("@") or "@" in key:
                continue  # annotations such as @odata.type
            if key == meta.id_column:
                body_id = _same_id(meta.id_column, value, row_id)
                continue
            values.update(self._column_value(table, key, value))
        return values, owner, body_id if for_create else None

    def _column_value(self, table: TableStore, key: str, value: Any) -> dict[str, Any]:
        meta = table.meta
        if key in (meta.primary_name, "description"):
            return {key: text(value, key, 4000)}
        col = meta.column(key)
        if col is None and key.startswith("_") and key.endswith("_value"):
            lookup = meta.column(key[1:-6])
            if key == "_ownerid_value" or (lookup is not None and lookup.type == "lookup"):
                raise entity_reference(key)  # read-only: lookups are written with <column>@odata.bind
        if col is None:
            raise invalid_property(meta.logical_name, key)
        if col.type == "file":
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"File column '{key}' is written with PATCH .../{key}, not in a row body.")
        if col.type == "lookup":
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"Lookup '{key}' is set with '{key}@odata.bind'.")
        return {key: typed(col, meta.logical_name, value)}

    def _bind(self, col: ColumnDef, value: Any, key: str) -> str | None:
        if value is None:
            return None
        m = _BIND.match(str(value))
        target = self.state.store.tables[col.target or ""]
        if not m or m.group("set") != target.meta.set_name:
            raise DataverseError(ErrorCode.BAD_PAYLOAD,
                                 f"'{key}' must reference /{target.meta.set_name}(<guid>), got {value!r}.")
        parent = m.group("id").lower()
        if parent not in target.rows:  # Dataverse refuses a lookup to a record that does not exist
            raise not_found(target.meta.logical_name, parent)
        return parent

    def _bind_owner(self, value: Any) -> int:
        m = _BIND.match(str(value))
        user = self.state.store.users_by_id.get(m.group("id").lower()) if m and m.group("set") == "systemusers" else None
        if user is None:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"'ownerid@odata.bind' must reference /systemusers(<user guid>), got {value!r}.")
        return user.index


def _digest(payload: Any) -> int:
    """The body's digest for the write log; a body too deeply nested to encode again is a 400."""
    try:
        return body_digest(payload)
    except TypeError:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "The request body is nested too deeply.") from None


def _columns(payload: Any) -> tuple[str, ...] | None:
    """A body's plain columns (no lookup bindings or annotations), whose stored values the log keeps."""
    return tuple(k for k in payload if "@" not in k) if isinstance(payload, dict) else None


def _base(if_match: str | None) -> int | None:
    """The version an If-Match names (None for none or "*")."""
    return None if if_match is None or if_match.strip() == "*" else parse_etag(if_match)


def _same_id(column: str, value: Any, row_id: str | None) -> str:
    """A primary id in a body: a GUID, and the URL's row when the URL names one."""
    body_id = guid(value, column)
    if row_id is not None and body_id != row_id:
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The primary id '{column}' in the body ({body_id}) is not the "
                             f"id of the row the URL names ({row_id}); a row's id cannot be changed.")
    return body_id
