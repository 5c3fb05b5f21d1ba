"""What the fuzzer knows about the server it fuzzes: users and their tokens, tables, columns and row
ids (the user's own, another user's, rows it may not read, rows with files), read from the server's
state once and refreshed on demand."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlsplit

from fuzz.server import FuzzServer
from fuzz.wire import Client, Header, Request
from simulator.protocol.odata import API_ROOT
from simulator.server.state import ServerState
from simulator.server.store import TableStore, User

ROOT = API_ROOT
SYSTEM_COLUMNS = ("createdon", "modifiedon", "versionnumber", "_ownerid_value", "ownerid")


@dataclass
class Tokens:
    """Paging tokens the server gave out for a table: $skiptoken values and $deltatoken values."""

    skip: list[str] = field(default_factory=list)
    delta: list[str] = field(default_factory=list)


@dataclass
class TableInfo:
    """One table as the main user sees it. Row lists hold at most a few ids each."""

    logical: str
    set_name: str
    id_column: str
    primary_name: str
    columns: dict[str, str]  # declared column -> type
    change_tracking: bool
    own: list[str] = field(default_factory=list)  # the main user may read and update these
    foreign: list[str] = field(default_factory=list)  # readable, but the main user may not update them
    hidden: list[str] = field(default_factory=list)  # the main user may not read these
    own_files: list[str] = field(default_factory=list)  # own rows with a file in the first file column
    foreign_files: list[str] = field(default_factory=list)  # foreign rows with a file
    foreign_deletable: list[str] = field(default_factory=list)  # rows of others the main user may delete
    foreign_undeletable: list[str] = field(default_factory=list)  # readable rows of others it may not delete
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # alternate key name -> its columns
    alternate: dict[str, str] = field(default_factory=dict)  # row id -> its first alternate key (`a='x',b=2`)
    key_values: dict[str, dict[str, object]] = field(default_factory=dict)  # row id -> {key column: value}

    @property
    def file_columns(self) -> list[str]:
        return [c for c, t in self.columns.items() if t == "file"]

    @property
    def lookups(self) -> list[str]:
        return [c for c, t in self.columns.items() if t == "lookup"]

    def of_type(self, *types: str) -> list[str]:
        return [c for c, t in self.columns.items() if t in types]

    @property
    def readable_columns(self) -> list[str]:
        """Names a $select or $filter may use."""
        out = [self.id_column, self.primary_name, "description", *SYSTEM_COLUMNS]
        for c, t in self.columns.items():
            out.append(c)
            if t == "lookup":
                out.append(f"_{c}_value")
            if t == "file":
                out += [f"{c}_name", f"{c}_size"]
        return list(dict.fromkeys(out))


def _scan(state: ServerState, user: User, table: TableStore, per_list: int = 4) -> TableInfo:
    meta = table.meta
    info = TableInfo(meta.logical_name, meta.set_name, meta.id_column, meta.primary_name,
                     {c.name: c.type for c in meta.columns}, meta.change_tracking)
    access = state.access
    info.keys = dict(table.keys)
    first_file = table.file_columns[0] if table.file_columns else None
    for row in sorted(table.rows.values(), key=lambda r: r.id):
        readable = access.can_read(user, table, row)
        writable = readable and access.can_write(user, table, row, "update")
        has_file = first_file is not None and bool(row.files) and first_file in (row.files or {})
        if not readable:
            target = info.hidden
        elif writable and row.owner == user.index:
            target = info.own
        elif not writable:
            target = info.foreign
        else:
            target = None
        if target is not None and len(target) < per_list:
            target.append(row.id)
        if has_file and readable and row.owner == user.index and writable and len(info.own_files) < per_list:
            info.own_files.append(row.id)
        if has_file and readable and not writable and len(info.foreign_files) < per_list:
            info.foreign_files.append(row.id)
        if row.owner != user.index and readable:
            deletable = access.can_write(user, table, row, "delete")
            into = info.foreign_deletable if deletable else info.foreign_undeletable
            if len(into) < per_list:
                into.append(row.id)
    for row_id in {*info.own, *info.foreign, *info.hidden}:
        row = table.rows[row_id]
        for name, _ in table.key_values(row)[:1]:  # the row's first alternate key with every column set
            values = {c: row.values[c] for c in table.keys[name]}  # as stored (the index folds text's case)
            info.key_values[row_id] = values
            info.alternate[row_id] = ",".join(f"{c}={_literal(v)}" for c, v in values.items())
    return info


def _literal(value: object) -> str:
    """A key value as it is written in a URL key segment: text quoted (quotes doubled), numbers bare."""
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else str(value)


class Context:
    """Users, tokens and rows of the server under fuzz, for building requests."""

    def __init__(self, server: FuzzServer, client: Client) -> None:
        self.server = server
        self.client = client
        self._counter = itertools.count(1)
        self.tokens: dict[str, str] = {}
        users = server.call(lambda s: [u for u in s.store.users if u.name != "backoffice"])
        self.main = users[0].name
        same = [u.name for u in users[1:] if u.user_class == users[0].user_class]
        self.peer = same[0] if same else users[1].name
        other = [u.name for u in users if u.user_class != users[0].user_class]
        self.other = other[0] if other else self.peer
        self.user_ids = {u.name: u.id for u in users}
        self.token_ttl_s = server.scenario.server.token_ttl_s
        self.tables: dict[str, TableInfo] = {}
        self._tokens: dict[str, Tokens] = {}
        self.refresh_rows()
        self.refresh_tokens()

    # --- identities -------------------------------------------------------------------------------
    @property
    def admin_key(self) -> str:
        return self.server.admin_key

    def new_token(self, user: str) -> str:
        """A fresh token for a user from POST /_syncsim/token."""
        answer = self.client.send(Request("POST", "/_syncsim/token", [
            ("Authorization", f"Bearer {self.admin_key}"), ("Content-Type", "application/json")],
            json.dumps({"user": user}).encode(), who="admin"))
        if answer.status != 200:
            raise RuntimeError(f"POST /_syncsim/token for {user} answered {answer.summary()}")
        token: str = answer.json()["access_token"]
        return token

    def refresh_tokens(self) -> None:
        for user in dict.fromkeys((self.main, self.peer, self.other)):
            self.tokens[user] = self.new_token(user)

    def token(self, who: str) -> str:
        """The bearer value for 'admin', a user's name, or 'main' / 'peer' / 'other'."""
        if who == "admin":
            return self.admin_key
        name = {"main": self.main, "peer": self.peer, "other": self.other}.get(who, who)
        if name not in self.tokens:
            self.tokens[name] = self.new_token(name)
        return self.tokens[name]

    def auth(self, who: str = "main") -> list[Header]:
        return [("Authorization", f"Bearer {self.token(who)}")]

    def name_of(self, who: str) -> str:
        return {"main": self.main, "peer": self.peer, "other": self.other}.get(who, who)

    def request(self, method: str, path: str, who: str | None = "main", headers: Sequence[Header] | None = None,
                body: bytes | None = None, json_body: object = None) -> Request:
        """A request as `who` (None: no Authorization); a JSON body is encoded with its Content-Type."""
        h: list[Header] = [] if who is None else self.auth(who)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            if not any(k.lower() == "content-type" for k, _ in headers or []):
                h.append(("Content-Type", "application/json"))
        h += headers or []
        return Request(method, path, h, body, who=None if who is None else self.name_of(who) if who != "admin" else "admin")

    # --- rows ---------------------------------------------------------------------------------------
    def refresh_rows(self) -> None:
        def scan(state: ServerState) -> dict[str, TableInfo]:
            user = state.store.users_by_name[self.main]
            return {name: _scan(state, user, t) for name, t in state.store.tables.items()}
        self.tables = self.server.call(scan)

    def paging_tokens(self, info: TableInfo) -> Tokens:
        """A query's $skiptoken and a tracked read's $skiptoken and $deltatoken for the table (fetched
        once, as the main user)."""
        if info.logical not in self._tokens:
            tokens = Tokens()
            for prefer in ("odata.maxpagesize=2", "odata.track-changes,odata.maxpagesize=2", "odata.track-changes"):
                answer = self.client.send(self.request("GET", f"{ROOT}/{info.set_name}", headers=[("Prefer", prefer)]))
                if answer.status != 200:
                    continue
                body = answer.json()
                for link, into in (("@odata.nextLink", tokens.skip), ("@odata.deltaLink", tokens.delta)):
                    query = parse_qs(urlsplit(body.get(link, "")).query)
                    name = "$skiptoken" if link == "@odata.nextLink" else "$deltatoken"
                    into += query.get(name, [])
            self._tokens[info.logical] = tokens
        return self._tokens[info.logical]

    def version_of(self, table: str, row_id: str) -> int | None:
        def read(state: ServerState) -> int | None:
            row = state.store.tables[table].rows.get(row_id)
            return row.version if row is not None else None
        return self.server.call(read)

    def may(self, who: str, table: str, row_id: str, op: str) -> bool:
        """Whether a user may read ("read"), update ("update") or delete ("delete") a row now."""
        name = self.name_of(who)

        def check(state: ServerState) -> bool:
            user, store = state.store.users_by_name[name], state.store.tables[table]
            row = store.rows.get(row_id)
            if row is None or not state.access.can_read(user, store, row):
                return False
            return op == "read" or state.access.can_write(user, store, row, op)
        return self.server.call(check)

    @property
    def first_set(self) -> str:
        """The entity set of the first table (for requests that any set would do)."""
        return next(iter(self.tables.values())).set_name

    def etag(self, table: str, row_id: str, offset: int = 0) -> str:
        version = self.version_of(table, row_id)
        return f'W/"{(version or 0) + offset}"'

    def table(self, *wanted: str) -> TableInfo | None:
        """The first table that has every list named (e.g. 'own', 'foreign_files'), or None."""
        for info in self.tables.values():
            if all(getattr(info, w) for w in wanted):
                return info
        return None

    def unique(self, prefix: str = "fuzz") -> str:
        return f"{prefix}-{next(self._counter)}"

    def new_guid(self) -> str:
        return str(uuid.UUID(int=(0xF0220000 << 96) | next(self._counter), version=4))

    def metadata_id(self, logical: str) -> str:
        from simulator.server.handlers.metadata import metadata_id
        return metadata_id(logical)


def row_path(info: TableInfo, row_id: str, suffix: str = "") -> str:
    return f"{ROOT}/{info.set_name}({row_id}){suffix}"


def q(path: str, params: dict[str, str]) -> str:
    """A path with an encoded query string (OData option names keep their `$`)."""
    if not params:
        return path
    return path + "?" + "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in params.items())
