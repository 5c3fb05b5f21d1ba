"""The sync engine: first sync (metadata, data, files), delta sync, forced resync, outbox upload.

Written once against the Web API; the standalone runner, Locust and the benchmarks all drive it.
The device's own work (storing a page's rows, writing a file's bytes, taking in a table's metadata)
costs the time its `Processing` says, spent like a transfer (real seconds on the clock) once per
page, file range or table, and counted in `Tally.processing_s`. State needed to resume (the next
page link per table, files still to fetch and their offsets) lives on `SyncState`, so a sync cut by
airplane mode or a failure continues where it stopped.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from simulator.device.client import ApiClient, SyncFailed, Tally
from simulator.device.outbox import Op, Outbox
from simulator.device.pages import PageReader, row_size_of
from simulator.device.processing import NO_PROCESSING, Processing
from simulator.device.store import LocalStore, StorageFull, unpack
from simulator.device.upload import Outcome, upload_ops
from simulator.protocol import ErrorCode
from simulator.protocol.odata import (
    API_ROOT,
    CONFLICT_DETECTION,
    FILE_CHUNK_BYTES,
    delta_link_version,
    row_digest,
)
from simulator.scenario import ProfileTable

EXPIRED = ErrorCode.EXPIRED_VERSION_STAMP.code


@dataclass(slots=True)
class TableInfo:
    """What metadata told the device about a profile table."""

    logical_name: str
    entity_set: str
    id_column: str
    editable: list[tuple[str, str, Any]] = field(default_factory=list)  # (column, type, choices, max length or (min, max))
    file_columns: list[str] = field(default_factory=list)
    lookups: list[tuple[str, str]] = field(default_factory=list)  # (column, target logical name)
    conflict_detection: bool = False  # send If-Match (server wins); else last writer wins, with the base version


@dataclass(slots=True)
class PendingFile:
    """A file to download: where it is, its id and size; the bytes held so far are in the store."""

    table: str
    entity_set: str
    row_id: str
    column: str
    file_id: str
    size: int


@dataclass(slots=True)
class SyncState:
    """Per-device sync progress that survives cuts: links, pending files, metadata."""

    tables: dict[str, TableInfo] = field(default_factory=dict)
    delta_links: dict[str, str] = field(default_factory=dict)  # table -> deltaLink once complete
    resume_links: dict[str, str] = field(default_factory=dict)  # table -> nextLink of an unfinished read
    files: dict[str, PendingFile] = field(default_factory=dict)  # "<table>/<row id>/<column>" -> file, in order
    first_sync_done: bool = False
    metadata_done: bool = False
    resync: set[str] = field(default_factory=set)  # tables a forced resync still has to read in full
    # (table, row id) to re-read after a refused edit, in the order refused (a dict: a set's order would
    # follow hash randomization, and with it the order of the device's requests)
    refresh: dict[tuple[str, str], None] = field(default_factory=dict)
    token_regressions: list[str] = field(default_factory=list)  # tables whose new delta token was older (ledger)


@dataclass(slots=True)
class UploadResult:
    uploaded: int = 0
    applied: int = 0
    conflicts: int = 0
    rejections: int = 0
    rejection_codes: dict[str, int] = field(default_factory=dict)


class SyncEngine:
    """Runs the sync phases for one device against the Web API."""

    __slots__ = ("api", "store", "outbox", "state", "profile", "page_size", "batch_uploads", "answered",
                 "processing")

    def __init__(self, api: ApiClient, store: LocalStore, outbox: Outbox, profile: list[ProfileTable],
                 page_size: int = 5000, batch_uploads: bool = True, processing: Processing = NO_PROCESSING) -> None:
        self.api = api
        self.store = store
        self.outbox = outbox
        self.state = SyncState()
        self.profile = profile
        self.page_size = page_size
        self.batch_uploads = batch_uploads
        self.answered: Callable[[Op, Outcome], None] = _ignore  # told of every answered op (the ledger)
        self.processing = processing  # what the device's own work costs (none by default)

    # --- phases -----------------------------------------------------------------------------
    async def metadata(self, tally: Tally) -> None:
        """Download each profile table's definition with its attributes, and take it in (the
        device's `metadata_s_per_table`)."""
        for pt in self.profile:
            if pt.table in self.state.tables:
                continue
            resp = await self.api.call(
                "GET", f"{API_ROOT}/EntityDefinitions(LogicalName='{pt.table}')?$expand=Attributes", tally,
                table=pt.table)
            info = _table_info(orjson.loads(resp.body))
            resp = await self.api.call(
                "GET", f"{API_ROOT}/EntityDefinitions(LogicalName='{pt.table}')/Attributes/"
                "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
                tally, table=pt.table)
            _add_choices(info, orjson.loads(resp.body))
            self.state.tables[pt.table] = info
            await self._process(self.processing.metadata_s(1), tally)
        self.state.metadata_done = True

    async def data(self, tally: Tally, rows: dict[str, int]) -> None:
        """Initial tracked read of every profile table not read yet (first sync; resumes after a cut)."""
        for pt in self.profile:
            if pt.table in self.state.delta_links:
                continue
            info = self.state.tables[pt.table]
            link = self.state.resume_links.get(pt.table) or f"{API_ROOT}/{info.entity_set}"
            await self._follow(info, pt, link, tally, rows, tracked=True)

    async def resync(self, tally: Tally, rows: dict[str, int]) -> None:
        """Forced resync: read each pending table in full, then drop local rows the server no longer gives.

        A table cut part-way is read again from its first page, so the reconciliation sees all of it.
        """
        for pt in self.profile:
            if pt.table not in self.state.resync:
                continue
            info = self.state.tables[pt.table]
            seen: set[str] = set()
            self.state.resume_links.pop(pt.table, None)
            await self._follow(info, pt, f"{API_ROOT}/{info.entity_set}", tally, rows, tracked=True, seen=seen)
            held = self.store.ids(pt.table)
            gone = [i for i in held if i not in seen and not self.outbox.created_offline(pt.table, i)]
            for row_id in gone:
                self.store.remove(pt.table, row_id)
            self.state.resync.discard(pt.table)
            await self._process(self.processing.rows_s(len(gone)), tally)

    async def delta(self, tally: Tally, rows: dict[str, int]) -> bool:
        """Follow every table's deltaLink. Returns False when a token expired: every table then
        needs a forced resync (`resync`)."""
        for pt in self.profile:
            info = self.state.tables[pt.table]
            link = self.state.resume_links.get(pt.table) or self.state.delta_links[pt.table]
            try:
                await self._follow(info, pt, link, tally, rows, tracked=False)
            except SyncFailed as exc:
                if exc.code != EXPIRED:
                    raise
                self.state.delta_links.clear()
                self.state.resume_links.clear()
                self.state.resync = {p.table for p in self.profile}
                return False
        return True

    async def files(self, tally: Tally) -> None:
        """Download pending files in 4 MiB ranges, each range asked from the bytes already stored.

        A file that vanished before its download (its row deleted, the file removed or replaced,
        read access lost: 403, 404, 416, or another size) is dropped from the plan; the next delta
        brings the row's new state, and with it any new file.
        """
        while self.state.files:
            key, f = next(iter(self.state.files.items()))
            if self.store.version(f.table, f.row_id) is not None:
                self.store.start_file(key, f.file_id)
                if not await self._download(key, f, tally):
                    self.store.drop_file(key)
            del self.state.files[key]

    async def _download(self, key: str, f: PendingFile, tally: Tally) -> bool:
        """Fetch the rest of one file; False when it is no longer there as planned."""
        self.store.reserve(f.size - self.store.files[key])

        def sink(chunk: bytes) -> None:
            self.store.add_file_bytes(key, chunk)
            tally.file_bytes += len(chunk)

        while (held := self.store.files[key]) < f.size:
            end = min(f.size, held + FILE_CHUNK_BYTES) - 1

            def rest_of_range(end: int = end) -> dict[str, str]:  # asked again after a cut: from the bytes held
                return {"Range": f"bytes={self.store.files[key]}-{end}"}

            try:
                resp = await self.api.call(
                    "GET", f"{API_ROOT}/{f.entity_set}({f.row_id})/{f.column}/$value", tally,
                    headers=rest_of_range, sink=sink, accept=(403, 404, 416))
            except SyncFailed:  # the bytes its attempts stored are kept, and were written
                await self._process(self.processing.files_s(self.store.files[key] - held), tally)
                raise
            await self._process(self.processing.files_s(self.store.files[key] - held), tally)
            if resp.status >= 400 or _file_total(resp.headers.get("Content-Range")) != f.size:
                return False
        return True

    async def upload(self, tally: Tally, result: UploadResult) -> UploadResult:
        """Send the outbox (as $batch or one request per op), apply the answers locally, count into `result`.

        Counts go into the caller's object as each answer arrives, so a sync cut after some uploads
        still reports them. Rows whose edit was refused are re-read (`state.refresh`) before the
        phase ends; that list survives a cut.
        """
        while (group := self.outbox.next_group(200 if self.batch_uploads else 1)) is not None:
            detect = {t: info.conflict_detection for t, info in self.state.tables.items()}
            outcomes = await upload_ops(self.api, group, tally, batch=self.batch_uploads, detect=detect)
            self.outbox.done(group)
            for op, outcome in zip(group.ops, outcomes, strict=True):
                self._apply_outcome(op, outcome, result)
        await self._refresh_all(tally)
        return result

    async def _refresh_all(self, tally: Tally) -> None:
        """After refused updates or deletes, take the server's copy back (or drop rows that are gone)."""
        while self.state.refresh:
            table, row_id = next(iter(self.state.refresh))
            info = self.state.tables[table]
            resp = await self.api.call("GET", f"{API_ROOT}/{info.entity_set}({row_id})", tally,
                                       table=table, accept=(403, 404))
            if resp.status != 200:
                self.store.remove(table, row_id)
            else:  # like a page of one row: the row back at the server's version, its files planned again
                pt = next(p for p in self.profile if p.table == table)
                row = orjson.loads(resp.body)
                row.pop("@odata.context", None)  # the answer's, not the row's: the row as a page carries it
                self._apply_page(info, pt, [row], {}, None)
            self.state.refresh.pop((table, row_id), None)
            await self._process(self.processing.rows_s(1), tally)

    # --- internals ----------------------------------------------------------------------------
    def _apply_outcome(self, op: Op, outcome: Outcome, result: UploadResult) -> None:
        """Count one answered op and update the store and the outbox; refused rows are queued for re-reading."""
        status, version, conflict, code = outcome
        result.uploaded += 1
        if status < 300:
            result.applied += 1
            result.conflicts += int(conflict)
            if version is not None and op.kind != "delete":
                if not conflict:  # the new version is exactly the device's row; after an overwrite
                    # (last writer wins) it also holds the other writer's columns: the next delta brings it
                    self.store.set_version(op.table, op.row_id, version)
                self.outbox.chain(op.table, op.row_id, version)
        elif status == 412 and op.kind != "create":
            result.conflicts += 1  # detection on: server wins, the next delta brings its version
        else:
            result.rejections += 1
            key = code or f"HTTP_{status}"
            result.rejection_codes[key] = result.rejection_codes.get(key, 0) + 1
            if op.kind == "create":
                self.store.remove(op.table, op.row_id)
            else:
                self.state.refresh[(op.table, op.row_id)] = None
        self.answered(op, outcome)

    async def _follow(self, info: TableInfo, pt: ProfileTable, link: str, tally: Tally, rows: dict[str, int],
                      tracked: bool, seen: set[str] | None = None) -> None:
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}" + (",odata.track-changes" if tracked else "")}
        staged = PageRows(self, info, pt, rows, seen)
        reader = PageReader(staged.add)

        def attempt() -> PageReader:  # each attempt reads the page from its first byte
            staged.clear()
            return reader.restart()

        while True:  # a page is parsed as it streams in (pages.py), never held whole, and applied at its end
            await self.api.call("GET", link, tally, headers=headers, table=pt.table, reader=attempt)
            page = reader.finish()
            written = staged.commit()
            nxt = page.get("@odata.nextLink")
            delta = None if nxt else page["@odata.deltaLink"]
            del page
            if nxt:
                self.state.resume_links[pt.table] = link = nxt
            else:
                self.state.resume_links.pop(pt.table, None)
                assert delta is not None
                self._new_token(pt.table, delta)
            await self._process(self.processing.rows_s(written), tally)  # storing the page's rows
            if not nxt:
                return

    async def _process(self, seconds: float, tally: Tally) -> None:
        """The device's own work: `seconds` of real time (never compressed, as a transfer's), so
        the sync's lived duration and its phase include it; counted in `tally.processing_s`."""
        if seconds > 0:
            tally.processing_s += seconds
            await self.api.clock.sleep_real(seconds)

    def _new_token(self, table: str, link: str) -> None:
        """Keep a table's new deltaLink; note it if its token is older than the one it replaces."""
        old = self.state.delta_links.get(table)
        if old is not None and delta_link_version(link) < delta_link_version(old):
            self.state.token_regressions.append(table)
        self.state.delta_links[table] = link

    def _apply_page(self, info: TableInfo, pt: ProfileTable, values: list[dict[str, Any]],
                    rows: dict[str, int], seen: set[str] | None) -> None:
        """Apply a whole page at once (one storage check; see `PageRows`)."""
        page = PageRows(self, info, pt, rows, seen)
        page.add(values)
        page.commit()

    def _queue_files(self, info: TableInfo, pt: ProfileTable, row_id: str, files: list[tuple[str, Any, int]]) -> None:
        """Plan the download of a row's files that are new or changed; drop local ones it no longer has.
        `files`: (column, file id, size) for each of the table's file columns."""
        for col, file_id, size in files:
            key = f"{pt.table}/{row_id}/{col}"
            wanted = bool(file_id and size) and (pt.max_file_kb is None or size <= pt.max_file_kb * 1024)
            if not wanted:
                self.store.drop_file(key)
                self.state.files.pop(key, None)
            elif self.store.file_ids.get(key) != file_id or self.store.files.get(key, 0) < size:
                self.state.files[key] = PendingFile(pt.table, info.entity_set, row_id, col, str(file_id), size)


class PageRows:
    """What one page changes on the device, gathered as its rows stream in and applied once the
    page is complete (`commit`), as one store transaction: a page cut half-way changes nothing, so
    a row it brought cannot outlive its deletion on the server when the page is read again. Kept
    small: per row only its id, version, size and files, never the row itself."""

    __slots__ = ("engine", "info", "pt", "rows", "seen", "removed", "ids", "versions", "sizes", "digests", "unchanged",
                 "files")

    def __init__(self, engine: SyncEngine, info: TableInfo, pt: ProfileTable, rows: dict[str, int],
                 seen: set[str] | None) -> None:
        self.engine, self.info, self.pt = engine, info, pt
        self.rows = rows  # rows stored per table, counted at commit
        self.seen = seen  # a forced resync's set of every row id the server gave
        self.removed: list[str] = []
        self.ids: list[str] = []  # new or changed rows; their versions and sizes in packed arrays
        self.versions = array("q")
        self.sizes = array("q")
        self.digests = array("Q")  # row_digest of each row as received
        self.unchanged: list[str] = []  # only gathered for `seen`
        self.files: list[tuple[str, list[tuple[str, Any, int]]]] = []  # (row id, [(column, file id, size)])

    def clear(self) -> None:
        self.removed.clear()
        self.ids.clear()
        del self.versions[:], self.sizes[:], self.digests[:]
        self.unchanged.clear()
        self.files.clear()

    def add(self, values: list[dict[str, Any]]) -> None:
        """Rows of the page as parsed: tombstones, and rows new or changed against the store (or
        whose contents the device does not know: it wrote them itself since it last received them)."""
        id_column, held = self.info.id_column, self.engine.store.ids(self.pt.table)
        file_columns = self.info.file_columns if self.pt.files else []
        for item in values:
            if item.get("reason") == "deleted":
                self.removed.append(item["id"])
                continue
            row_id, version = item[id_column], _version(item)
            packed = held.get(row_id)
            if packed is None or (known := unpack(packed))[0] != version or not known[2]:
                raw = orjson.dumps(item)
                self.ids.append(row_id)
                self.versions.append(version)
                self.sizes.append(row_size_of(raw))
                self.digests.append(row_digest(raw))
                if file_columns:
                    self.files.append((row_id, [(c, item.get(c), int(item.get(f"{c}_size") or 0))
                                                for c in file_columns]))
            elif self.seen is not None:
                self.unchanged.append(row_id)

    def commit(self) -> int:
        """Apply the page: removals, then new or changed rows in one storage check (each row
        costs its JSON's size, `pages.row_size`); queue their files. Returns the rows written
        (removed, new or changed), what storing the page costs the device."""
        engine, table, ids = self.engine, self.pt.table, self.ids
        for row_id in self.removed:
            engine.store.remove(table, row_id)
        if self.seen is not None:
            self.seen.update(self.unchanged)
            self.seen.update(ids)
        try:
            engine.store.put_many(table, ids, self.versions, self.sizes, self.digests)
        except StorageFull as exc:
            raise SyncFailed("STORAGE_FULL", str(exc)) from None
        if ids:
            self.rows[table] = self.rows.get(table, 0) + len(ids)
        for row_id, files in self.files:
            engine._queue_files(self.info, self.pt, row_id, files)
        written = len(self.removed) + len(ids)
        self.clear()
        return written


def _file_total(content_range: str | None) -> int | None:
    """The file size a 206 answer states (`Content-Range: bytes s-e/total`)."""
    if not content_range or "/" not in content_range:
        return None
    try:
        return int(content_range.rsplit("/", 1)[1])
    except ValueError:
        return None


def _ignore(op: Op, outcome: Outcome) -> None:
    pass


def _version(item: dict[str, Any]) -> int:
    return int(item.get("versionnumber") or _etag_version(item.get("@odata.etag", "")))


def _etag_version(etag: str) -> int:
    digits = "".join(ch for ch in etag if ch.isdigit())
    return int(digits) if digits else 0


_EDITABLE = {"String": "text", "Integer": "integer", "Decimal": "decimal", "Picklist": "choice", "Memo": "text"}


def _add_choices(info: TableInfo, body: dict[str, Any]) -> None:
    """Fill option values of choice columns from the picklist metadata."""
    options = {a["LogicalName"]: [o["Value"] for o in a.get("OptionSet", {}).get("Options", [])]
               for a in body.get("value", [])}
    info.editable = [(n, t, options.get(n, x) if t == "choice" else x) for n, t, x in info.editable]


def _table_info(body: dict[str, Any]) -> TableInfo:
    """Parse EntityDefinitions(LogicalName='x')?$expand=Attributes into what sync needs."""
    info = TableInfo(body["LogicalName"], body["EntitySetName"], body["PrimaryIdAttribute"],
                     conflict_detection=bool(body.get(CONFLICT_DETECTION, False)))
    for attr in body.get("Attributes", []):
        kind = attr.get("AttributeType")
        name = attr.get("LogicalName")
        if kind == "File":
            info.file_columns.append(name)
        elif kind == "Lookup" and attr.get("Targets"):
            info.lookups.append((name, attr["Targets"][0]))
        elif kind in _EDITABLE and name not in ("createdon", "modifiedon") and attr.get("IsValidForUpdate", True):
            extra: Any = attr.get("MaxLength")
            if kind == "Picklist":
                extra = [o["Value"] for o in attr.get("OptionSet", {}).get("Options", [])]
            elif kind in ("Integer", "Decimal") and attr.get("MinValue") is not None and attr.get("MaxValue") is not None:
                extra = (attr["MinValue"], attr["MaxValue"])  # the user types a value the column accepts
            info.editable.append((name, _EDITABLE[kind], extra))
    return info

