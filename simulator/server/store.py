"""In-memory tables, rows, users and the change log.

Rows are immutable: a write makes a new Row with a new global version, and the change log keeps the
row it replaced, so a delta can tell what a device saw before. Row values are kept with their wire
names (lookups as `_<column>_value`), so rendering a row is a dict merge plus one orjson call,
cached per row version.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from simulator.protocol import format_etag
from simulator.scenario import Privilege, TableDef


def lookup_key(column: str) -> str:
    """The wire name of a lookup column's value: `_<column>_value`."""
    return f"_{column}_value"


def key_index(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Alternate-key values as the key index compares them: text case-insensitively, as Dataverse's
    database collation does ('ACC-1' and 'acc-1' are the same key)."""
    return tuple(v.casefold() if isinstance(v, str) else v for v in values)


@dataclass(slots=True)
class FileInfo:
    """A file attached to a row: size in bytes, name, and its bytes (None: generated from `seed`)."""

    file_id: str
    size: int
    name: str
    seed: int = 0
    data: bytes | None = None
    mimetype: str = "application/octet-stream"


class Row:
    """One row version. `owner` and `team` are user and team indexes; `modified` is scenario time."""

    __slots__ = ("id", "version", "owner", "team", "modified", "values", "files", "_enc")  # _enc: see encoded()

    def __init__(
        self,
        id: str,
        version: int,
        owner: int,
        team: int,
        modified: float,
        values: dict[str, Any],
        files: dict[str, FileInfo] | None = None,
    ) -> None:
        self.id = id
        self.version = version
        self.owner = owner
        self.team = team
        self.modified = modified
        self.values = values
        self.files = files
        self._enc: bytes | None = None

    def encoded(self, table: TableStore) -> bytes:
        """The full row as JSON bytes, as a Web API read returns it (cached for this version)."""
        if self._enc is None:
            self._enc = orjson.dumps(table.render(self))
        return self._enc


DEFAULT_PRIVILEGE = Privilege()  # frozen: one instance serves every table without a privilege of its own


@dataclass(slots=True)
class User:
    """A scenario user: index, GUID, name (`<class>-<n>`), class and team index."""

    index: int
    id: str
    name: str
    user_class: str
    team: int
    privileges: dict[str, Privilege] = field(default_factory=dict)
    # per table: (version, row id) of rows that entered or left this user's view through a privilege change
    view_log: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # per table: (version, privilege in force before that version) for every privilege change
    privilege_log: dict[str, list[tuple[int, Privilege]]] = field(default_factory=dict)

    def privilege(self, table: str, at_version: int | None = None) -> Privilege:
        """The privilege on a table now, or as it was at a row version (for delta before-states)."""
        if at_version is not None:
            for version, before in self.privilege_log.get(table, ()):
                if at_version < version:
                    return before
        return self.privileges.get(table, DEFAULT_PRIVILEGE)


@dataclass(slots=True)
class LogEntry:
    version: int
    row_id: str
    prev: Row | None  # the row before this change (None: created)


class TableStore:
    """One table's rows, indexes by owner / team / lookup, and its change log."""

    def __init__(self, meta: TableDef, users: list[User]) -> None:
        self.meta = meta
        self.users = users
        self.rows: dict[str, Row] = {}
        self.by_owner: dict[int, set[str]] = {}
        self.by_team: dict[int, set[str]] = {}
        self.lookups = [c.name for c in meta.columns if c.type == "lookup"]
        self.children: dict[str, dict[str, set[str]]] = {c: {} for c in self.lookups}
        self.file_columns = [c.name for c in meta.columns if c.type == "file"]
        # alternate keys: name -> columns, and name -> key_index(values) -> row id, for rows whose key values are all set
        self.keys: dict[str, tuple[str, ...]] = {k.name: tuple(k.columns) for k in meta.keys}
        self.by_key: dict[str, dict[tuple[Any, ...], str]] = {k.name: {} for k in meta.keys}
        # every declared column reads as null until set, as Dataverse returns them
        self.blank: dict[str, Any] = {lookup_key(c.name) if c.type == "lookup" else c.name: None
                                      for c in meta.columns if c.type != "file"}
        self.log_versions: list[int] = []
        self.log: list[LogEntry] = []
        # owner index -> (versions, entries) of the changes of rows that owner held before or after:
        # a user who may read only its own rows finds its delta here, not in every change of the table
        self.owner_log: dict[int, tuple[list[int], list[LogEntry]]] = {}
        self.deleted: dict[str, Row] = {}  # id -> the last version of a deleted row (its tombstone's row)
        self.conflict_detection = False
        self.context_prefix = ""  # set by the app: "<root>/$metadata#<set>"

    # --- rendering -------------------------------------------------------------------------
    def render(self, row: Row) -> dict[str, Any]:
        """The row as a dict with wire names, etag and primary id."""
        out: dict[str, Any] = {"@odata.etag": format_etag(row.version), self.meta.id_column: row.id}
        out.update(self.blank)
        out.update(row.values)
        out["_ownerid_value"] = self.users[row.owner].id if 0 <= row.owner < len(self.users) else None
        out["versionnumber"] = row.version
        for col in self.file_columns:
            info = row.files.get(col) if row.files else None
            out[col] = info.file_id if info else None
            out[f"{col}_name"] = info.name if info else None
            out[f"{col}_size"] = info.size if info else None
        return out

    # --- indexes ---------------------------------------------------------------------------
    def _index(self, row: Row) -> None:
        self.by_owner.setdefault(row.owner, set()).add(row.id)
        self.by_team.setdefault(row.team, set()).add(row.id)
        for col in self.lookups:
            parent = row.values.get(lookup_key(col))
            if parent:
                self.children[col].setdefault(parent, set()).add(row.id)
        if self.keys:
            for name, values in self.key_values(row):
                self.by_key[name][values] = row.id

    def _unindex(self, row: Row) -> None:
        self.by_owner.get(row.owner, set()).discard(row.id)
        self.by_team.get(row.team, set()).discard(row.id)
        for col in self.lookups:
            parent = row.values.get(lookup_key(col))
            if parent:
                self.children[col].get(parent, set()).discard(row.id)
        if self.keys:
            for name, values in self.key_values(row):
                if self.by_key[name].get(values) == row.id:
                    del self.by_key[name][values]

    def key_values(self, row: Row) -> list[tuple[str, tuple[Any, ...]]]:
        """(key name, its values as indexed: key_index) for each alternate key whose columns are all set
        on the row."""
        out = []
        for name, columns in self.keys.items():
            values = tuple(row.values.get(c) for c in columns)
            if None not in values:
                out.append((name, key_index(values)))
        return out

    def key_clash(self, row_id: str, values: dict[str, Any]) -> str | None:
        """The name of an alternate key whose values (in `values`, a row's) another row already has."""
        for name, columns in self.keys.items():
            key = tuple(values.get(c) for c in columns)
            if None not in key:
                other = self.by_key[name].get(key_index(key))
                if other is not None and other != row_id:
                    return name
        return None

    # --- writes (the Store assigns versions) ------------------------------------------------
    def load(self, row: Row) -> None:
        """Add a seeded row without logging it (first sync reads it; no delta needs it)."""
        self.rows[row.id] = row
        self._index(row)

    def put(self, row: Row) -> Row | None:
        """Insert or replace a row, log the change; returns the previous row."""
        prev = self.rows.get(row.id)
        if prev is not None:
            self._unindex(prev)
        self.deleted.pop(row.id, None)
        self.rows[row.id] = row
        self._index(row)
        self._log(row.version, row.id, prev)
        return prev

    def remove(self, row_id: str, version: int) -> Row | None:
        prev = self.rows.pop(row_id, None)
        if prev is not None:
            self._unindex(prev)
            self._log(version, row_id, prev)
            self.deleted[row_id] = prev
        return prev

    def touch(self, row_id: str, version: int) -> None:
        """Log a row whose visibility may change because a row it looks up changed."""
        row = self.rows.get(row_id)
        if row is not None:
            self._log(version, row_id, row)

    def _log(self, version: int, row_id: str, prev: Row | None) -> None:
        """Log a change (call after the row is stored or removed): in the table's log and in the log
        of each owner the row had before or has after it."""
        entry = LogEntry(version, row_id, prev)
        self.log_versions.append(version)
        self.log.append(entry)
        row = self.rows.get(row_id)
        after = row.owner if row is not None else None
        before = prev.owner if prev is not None and prev.owner != after else None
        for owner in (after, before):
            if owner is not None:
                versions, entries = self.owner_log.setdefault(owner, ([], []))
                versions.append(version)
                entries.append(entry)

    def changes_since(self, version: int, upto: int, owner: int | None = None) -> dict[str, Row | None]:
        """Row ids changed in (version, upto], each with the row as it was at `version` (None: absent);
        with `owner`, only rows that owner held before or after a change (a superset of the rows a
        user who may read only its own rows could see change, or leave its view)."""
        versions, log = (self.log_versions, self.log) if owner is None else self.owner_log.get(owner, ([], []))
        out: dict[str, Row | None] = {}
        start = bisect_right(versions, version)
        end = bisect_right(versions, upto)
        for entry in log[start:end]:
            if entry.row_id not in out:
                out[entry.row_id] = entry.prev
        return out

    def unlog(self, entries: list[LogEntry]) -> None:
        """Take these entries out of the table's log and of the logs of the owners they were logged
        for (an all-or-nothing group undone; call it before the rows are put back)."""
        drop = {id(e) for e in entries}
        owners = {e.prev.owner for e in entries if e.prev is not None}
        owners |= {row.owner for e in entries if (row := self.rows.get(e.row_id)) is not None}
        logs = [(self.log_versions, self.log), *(self.owner_log[o] for o in sorted(owners) if o in self.owner_log)]
        for versions, log in logs:
            kept = [(v, e) for v, e in zip(versions, log, strict=True) if id(e) not in drop]
            versions[:] = [v for v, _ in kept]
            log[:] = [e for _, e in kept]

    def prune_log(self, before_version: int) -> None:
        """Drop change-log entries at or below a version (their tokens have expired)."""
        for versions, entries in [(self.log_versions, self.log), *self.owner_log.values()]:
            cut = bisect_right(versions, before_version)
            del versions[:cut]
            del entries[:cut]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows.values())


class Store:
    """All tables and users, plus the global row-version counter (the change-tracking clock)."""

    def __init__(self, tables: list[TableDef], users: list[User], start_version: int = 1000) -> None:
        self.users = users
        self.users_by_name = {u.name: u for u in users}
        self.users_by_id = {u.id: u for u in users}
        self.tables: dict[str, TableStore] = {t.logical_name: TableStore(t, users) for t in tables}
        self.by_set: dict[str, TableStore] = {t.meta.set_name: t for t in self.tables.values()}
        self.version = start_version
        # rows last modified before this time may enter a modified_within_days view when updated
        self.touch_cutoff = float("inf")
        # which (table, lookup column) pairs point at each table, for touch propagation
        self.referrers: dict[str, list[tuple[str, str]]] = {name: [] for name in self.tables}
        for t in tables:
            for col in t.columns:
                if col.type == "lookup" and col.target:
                    self.referrers[col.target].append((t.logical_name, col.name))

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def table(self, logical_name: str) -> TableStore:
        return self.tables[logical_name]

    def write(self, table: TableStore, row: Row) -> Row | None:
        """Store a new row version (row.version must come from next_version()).

        Rows that look this one up are logged too ("touched") when the change may move this row
        into or out of a view: a new owner or team, or a first update since the run started (a
        modified_within_days filter may now include it), so `related` profile tables follow.
        """
        prev = table.put(row)
        if prev is not None and (prev.owner != row.owner or prev.team != row.team or prev.modified < self.touch_cutoff):
            self._touch_children(table, row.id, row.version)
        return prev

    def delete(self, table: TableStore, row_id: str) -> Row | None:
        version = self.next_version()
        prev = table.remove(row_id, version)
        if prev is not None:
            self._touch_children(table, row_id, version)
        return prev

    def _touch_children(self, table: TableStore, row_id: str, version: int) -> None:
        for child_name, col in self.referrers[table.meta.logical_name]:
            child = self.tables[child_name]
            for child_id in list(child.children[col].get(row_id, ())):
                child.touch(child_id, version)
