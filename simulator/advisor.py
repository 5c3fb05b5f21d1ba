"""`syncsim advise`: what a scenario's offline profiles will cost, without a run.

Per user class: the rows, data and files one of its devices holds, per profile table and in total;
an estimated first sync per network of the class (per phase, the requests as the device engine makes
them: two metadata requests per table, pages of 5,000 rows, files in 4 MiB ranges; each request
timed by the network model's own formula, `Connection.exchange_s`: a round trip, its bytes on the
wire over the bandwidth, HTTP headers, and on the one connection of the sync its set-up (TCP, TLS
per the class's `connection`) and slow start); and warnings from the seed document and the Power Apps guardrails, each naming the
class, the table and the number, and saying what to change. (A lookup to a table outside the profile
is refused when the scenario is loaded, with the class, table and column named.) With several
scenarios, a side-by-side comparison of the estimates (what-if).

Estimates are expectations over the scenario's seeding (who owns rows, how many rows a lookup
fills, file sizes drawn from their distribution with the scenario's seed), for one typical user of
the class: rows owned are the table's rows over its owners; a team's are its members' share; a
`modified_within_days` window keeps its share of the seeded spread; a `related` table keeps the
share of its parents in view. The device's own work (reading metadata, storing rows, writing files,
per its device kind's `Processing`) follows each table, page and file range as in the engine, idling
the connection meanwhile (slow start after idle); per network the estimate is the class's device
mix (each kind's estimate weighted by its share; `first_sync_s[network]["processing"]` says how much
of it is device work), and `processing_s` has each kind's device work per phase. The server's own
time is not modelled (0 s); latency is its mean (no jitter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from simulator import seeds
from simulator.device.processing import NO_PROCESSING, Processing
from simulator.fleet import connection_of, processing_of
from simulator.network.faults import Bandwidth, Connection, Tcp
from simulator.network.presets import NetworkPreset
from simulator.protocol.odata import FILE_CHUNK_BYTES, MAX_PAGE_SIZE
from simulator.scenario import ProfileTable, Scenario, TableDef, UserClass

ROWS_WARN = 200_000  # rows per profile (seed document / Power Apps guidance)
ROWS_LIMIT = 3_000_000  # hard limit per profile
DATA_WARN_BYTES = 1 << 30  # 1 GB of data
FILES_WARN_BYTES = 4 << 30  # 4 GB of files
TABLES_WARN = 100
FILE_WARN_BYTES = 4 << 20  # files over 4 MB slow first sync
UNFILTERED_WARN_ROWS = 10_000  # an unfiltered table this big could use a filter
METADATA_BYTES = 20_000  # a table's metadata answers (EntityDefinitions with attributes, picklists)
MIB = 1 << 20


@dataclass(slots=True)
class TableEstimate:
    table: str
    filter: str
    rows: float
    data_bytes: float
    files: float = 0.0
    file_bytes: float = 0.0
    files_over_4mb: float = 0.0


@dataclass(slots=True)
class ClassEstimate:
    user_class: str
    devices: int
    tables: list[TableEstimate]
    smallest_storage_mb: float
    networks: list[str]
    first_sync_s: dict[str, dict[str, float]] = field(default_factory=dict)  # network -> phase -> s (+ total)
    processing_s: dict[str, dict[str, float]] = field(default_factory=dict)  # device kind -> phase -> s (+ total)
    page_size: int = MAX_PAGE_SIZE  # rows per page the class's devices get (their ask, within the server's limit)

    @property
    def rows(self) -> float:
        return sum(t.rows for t in self.tables)

    @property
    def data_bytes(self) -> float:
        return sum(t.data_bytes for t in self.tables)

    @property
    def file_bytes(self) -> float:
        return sum(t.file_bytes for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {"user_class": self.user_class, "devices": self.devices, "rows": round(self.rows),
                "data_mb": round(self.data_bytes / MIB, 2), "file_mb": round(self.file_bytes / MIB, 2),
                "tables": [{**asdict(t), "rows": round(t.rows), "data_bytes": round(t.data_bytes),
                            "files": round(t.files, 1), "file_bytes": round(t.file_bytes),
                            "files_over_4mb": round(t.files_over_4mb, 1)} for t in self.tables],
                "smallest_storage_mb": self.smallest_storage_mb,
                "first_sync_s": {n: {k: round(v, 1) for k, v in p.items()} for n, p in self.first_sync_s.items()},
                "processing_s": {d: {k: round(v, 2) for k, v in p.items()} for d, p in self.processing_s.items()}}


@dataclass(frozen=True, slots=True)
class Advice:
    level: str  # "warning", or "error" (the profile cannot work as it is)
    user_class: str
    table: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.user_class}" + (f" / {self.table}" if self.table else "")
        return f"{self.level}: {where}: {self.message}. {self.fix}"


@dataclass(slots=True)
class Report:
    scenario: str
    classes: list[ClassEstimate]
    advice: list[Advice]

    @property
    def errors(self) -> int:
        return sum(1 for a in self.advice if a.level == "error")

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "classes": [c.to_dict() for c in self.classes],
                "advice": [asdict(a) for a in self.advice]}


# --- rows in view -----------------------------------------------------------------------------------
class _Fleet:
    """Who owns rows and how users group into teams, as the seeding makes them."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.counts = scenario.class_counts()
        self.tables = {t.logical_name: t for t in scenario.tables}

    def owners(self, table: TableDef) -> int:
        classes = table.owned_by or [c.name for c in self.scenario.user_classes]
        return sum(self.counts.get(c, 0) for c in classes)

    def owned_share(self, table: TableDef, cls: UserClass) -> float:
        """The share of a table's rows one user of the class owns."""
        owns = not table.owned_by or cls.name in table.owned_by
        n = self.owners(table)
        return 1.0 / n if owns and n else 0.0

    def team_share(self, table: TableDef, cls: UserClass) -> float:
        """The share of a table's rows the user's team owns (teams are per class, round robin)."""
        members = self.counts.get(cls.name, 0) / max(1, cls.teams)
        return min(1.0, max(1.0, members) * self.owned_share(table, cls))

    def share(self, cls: UserClass, pt: ProfileTable, seen: frozenset[str] = frozenset()) -> float:
        """The share of the table's rows in view of one user of the class (privilege and filter)."""
        table = self.tables[pt.table]
        depth = cls.privileges[pt.table].read if pt.table in cls.privileges else "org"
        by_depth = {"org": 1.0, "team": self.team_share(table, cls), "user": self.owned_share(table, cls),
                    "none": 0.0}[depth]
        if pt.filter == "owner":
            by_filter = self.owned_share(table, cls)
        elif pt.filter == "team":
            by_filter = self.team_share(table, cls)
        elif pt.filter == "modified_within_days":
            spread = table.modified_within_days
            by_filter = 1.0 if spread <= 0 else min(1.0, (pt.days or 0) / spread)
        elif pt.filter == "related":
            by_filter = self._related(cls, pt, table, seen)
        else:
            by_filter = 1.0
        if pt.filter in ("owner", "team") and depth in ("user", "team"):
            return min(by_depth, by_filter)  # the same rows, seen both ways
        return by_depth * by_filter

    def _related(self, cls: UserClass, pt: ProfileTable, table: TableDef, seen: frozenset[str]) -> float:
        parent = next((p for p in cls.profile if p.table == pt.related_table), None)
        col = table.column(pt.via or "")
        if parent is None or col is None or pt.table in seen:
            return 0.0
        return col.fill * self.share(cls, parent, seen | {pt.table})


def _file_sizes(table: TableDef, seed: int, cap_kb: float | None) -> dict[str, tuple[float, float, float]]:
    """Per file column: (share of files the device downloads, their mean bytes, share of all files
    downloaded and over 4 MB), from its size distribution (seeded draws); files over the profile's
    `max_file_kb` are skipped, as the device skips them."""
    out: dict[str, tuple[float, float, float]] = {}
    rng = seeds.scenario_rng(seed, seeds.ADVISOR)
    for col in table.columns:
        if col.type == "file" and col.size is not None:
            s = col.size
            sizes = np.clip(rng.lognormal(math.log(s.median_kb), s.sigma, 20_000), s.min_kb, s.max_kb) * 1024
            kept = sizes if cap_kb is None else sizes[sizes <= cap_kb * 1024]
            share = len(kept) / len(sizes)
            mean = float(kept.mean()) if len(kept) else 0.0
            out[col.name] = (share, mean, float((kept > FILE_WARN_BYTES).sum()) / len(sizes))
    return out


def estimate_class(scenario: Scenario, fleet: _Fleet, cls: UserClass) -> ClassEstimate:
    tables: list[TableEstimate] = []
    for pt in cls.profile:
        table = fleet.tables[pt.table]
        rows = table.rows * fleet.share(cls, pt)
        est = TableEstimate(pt.table, pt.filter, rows, rows * table.row_bytes)
        sizes = _file_sizes(table, scenario.seed, pt.max_file_kb) if pt.files else {}  # files: false: none
        for name, (share, mean, over) in sizes.items():
            col = table.column(name)
            count = rows * (col.fill if col else 1.0)
            est.files += count * share
            est.file_bytes += count * share * mean
            est.files_over_4mb += count * over
        tables.append(est)
    smallest = min((d.storage_mb for d in cls.devices), default=float("inf"))
    out = ClassEstimate(cls.name, fleet.counts.get(cls.name, 0), tables, smallest, list(cls.networks),
                        page_size=min(cls.behaviour.page_size, scenario.server.max_page_size))
    kinds = device_kinds(cls)
    out.processing_s = {name: processing(out, work) for name, _, work in kinds if not work.free}
    for network in cls.networks:
        out.first_sync_s[network] = mixed_first_sync(out, scenario.network(network), connection_of(cls), kinds)
    return out


def first_sync(est: ClassEstimate, net: NetworkPreset, connection: Connection | None = None,
               work: Processing = NO_PROCESSING) -> dict[str, float]:
    """Seconds per phase on a network: the sync's requests one after another on one connection, new
    at the first request (so set-up and slow start are paid once, in the metadata phase), each timed
    by the network model's `Connection.exchange_s` at the mean latency. With `work`, the device's own
    work follows what it works on (a table's metadata, each page's rows, each file range's bytes), as
    in the engine: its seconds are added, and the connection idles meanwhile (`Tcp.rested`: slow
    start after idle)."""
    conn = connection or Connection()
    rtt = net.latency_ms / 1000
    down = None if net.down_kbps is None else Bandwidth(net.down_kbps)
    up = None if net.up_kbps is None else Bandwidth(net.up_kbps)
    tcp = Tcp()

    def rest(seconds: float) -> float:
        if seconds > 0:
            tcp.rested(seconds, rtt)
        return seconds

    def requests(count: float, down_bytes: float, then_s: float = 0.0) -> float:
        """`count` alike requests, each followed by `then_s` of the device's work."""
        if count <= 0:
            return 0.0
        if then_s <= 0:
            return conn.requests_s(tcp, rtt, down, up, count, down_bytes)
        return _alike(tcp, count, lambda: conn.exchange_s(tcp, rtt, down, up, 0.0, down_bytes) + rest(then_s))

    metadata = sum(requests(2, METADATA_BYTES / 2) + rest(work.metadata_s(1)) for _ in est.tables)
    data = 0.0
    for t in est.tables:
        pages = max(1, math.ceil(t.rows / est.page_size))
        data += requests(pages, t.data_bytes / pages, work.rows_s(t.rows / pages))
    files = 0.0
    for t in est.tables:
        chunks = t.files * max(1, math.ceil((t.file_bytes / t.files if t.files else 0) / FILE_CHUNK_BYTES))
        files += requests(chunks, t.file_bytes / chunks if chunks else 0.0,
                          work.files_s(t.file_bytes / chunks) if chunks else 0.0)
    return {"metadata": metadata, "data": data, "files": files, "total": metadata + data + files}


def _alike(tcp: Tcp, count: float, step: Callable[[], float]) -> float:
    """Seconds of `count` alike steps one after another on `tcp` (count may be fractional: an
    expectation); once a step leaves the connection as it found it, every later one costs the same."""
    total, left, steps = 0.0, count, 0
    while left > 0:
        before, steps = (tcp.fresh, tcp.up, tcp.down), steps + 1
        seconds = step()
        share = min(1.0, left)
        total, left = total + share * seconds, left - share
        if (tcp.fresh, tcp.up, tcp.down) == before or steps >= 256:  # windows settled (or as good as)
            return total + max(0.0, left) * seconds
    return total


# --- the device's own work -----------------------------------------------------------------------------
def device_kinds(cls: UserClass) -> list[tuple[str, float, Processing]]:
    """The class's device kinds: (name, share, processing); a name used twice gets "#2", "#3"..."""
    out: list[tuple[str, float, Processing]] = []
    seen: dict[str, int] = {}
    for d in cls.devices:
        seen[d.name] = seen.get(d.name, 0) + 1
        out.append((d.name if seen[d.name] == 1 else f"{d.name}#{seen[d.name]}", d.share, processing_of(d)))
    return out


def processing(est: ClassEstimate, work: Processing) -> dict[str, float]:
    """Seconds of the device's own work in a first sync, per phase, as the engine spends them: each
    profile table's metadata, every row stored (all new at a first sync), every file byte written."""
    metadata, data, files = work.metadata_s(len(est.tables)), work.rows_s(est.rows), work.files_s(est.file_bytes)
    return {"metadata": metadata, "data": data, "files": files, "total": metadata + data + files}


def mixed_first_sync(est: ClassEstimate, net: NetworkPreset, connection: Connection,
                     kinds: list[tuple[str, float, Processing]]) -> dict[str, float]:
    """A first sync on a network for the class's device mix: each kind's (`first_sync` with its
    processing), weighted by its share; "processing" says how much of it is the device's own work."""
    weights: dict[Processing, float] = {}
    for _, share, work in kinds:
        weights[work] = weights.get(work, 0.0) + share
    if len(weights) == 1:
        ((work, _),) = weights.items()
        out = first_sync(est, net, connection, work)
        return out if work.free else {**out, "processing": processing(est, work)["total"]}
    total = sum(weights.values())
    out = {"metadata": 0.0, "data": 0.0, "files": 0.0, "total": 0.0, "processing": 0.0}
    for work, weight in weights.items():
        one = {**first_sync(est, net, connection, work), "processing": processing(est, work)["total"]}
        for key in out:
            out[key] += one[key] * weight / total
    return out


# --- advice -------------------------------------------------------------------------------------------
def advise(est: ClassEstimate) -> list[Advice]:
    """Advice for one class's estimate: guardrails, big files, unfiltered tables, storage."""
    out: list[Advice] = []
    name = est.user_class
    if est.rows > ROWS_LIMIT:
        out.append(Advice("error", name, None, f"about {est.rows:,.0f} rows per device, over the hard limit of "
                          f"{ROWS_LIMIT:,} rows per profile", "Filter the biggest tables (owner, team or "
                          "modified_within_days) or leave tables the class does not need out of its profile"))
    elif est.rows > ROWS_WARN:
        out.append(Advice("warning", name, None, f"about {est.rows:,.0f} rows per device, over the guidance of "
                          f"{ROWS_WARN:,} rows per profile", "Filter the biggest tables so that first sync stays fast"))
    if est.data_bytes > DATA_WARN_BYTES:
        out.append(Advice("warning", name, None, f"about {est.data_bytes / MIB:,.0f} MB of data per device, over "
                          "1 GB", "Filter rows, or leave wide tables out of the profile"))
    if est.file_bytes > FILES_WARN_BYTES:
        out.append(Advice("warning", name, None, f"about {est.file_bytes / MIB:,.0f} MB of files per device, over "
                          "4 GB", "Download files on demand, or filter the tables that hold them"))
    if len(est.tables) > TABLES_WARN:
        out.append(Advice("warning", name, None, f"{len(est.tables)} tables in the profile, over {TABLES_WARN}",
                          "Keep only the tables the app's views need: metadata time grows with every table"))
    for t in est.tables:
        if t.files_over_4mb >= 0.5:
            out.append(Advice("warning", name, t.table, f"about {t.files_over_4mb:,.0f} files over 4 MB per device",
                              "Keep files under 4 MB (resize images before upload), or leave the file column out "
                              "of the profile"))
        if t.filter == "all" and t.rows > UNFILTERED_WARN_ROWS:
            out.append(Advice("warning", name, t.table, f"no filter: every device holds about {t.rows:,.0f} rows",
                              "Filter it (owner, team, modified_within_days, or related to a filtered table)"))
    need_mb = (est.data_bytes + est.file_bytes) / MIB
    if need_mb > est.smallest_storage_mb:
        out.append(Advice("error", name, None, f"about {need_mb:,.0f} MB of data and files, more than its smallest "
                          f"device's {est.smallest_storage_mb:,.0f} MB", "Filter the profile or keep files out of it "
                          "for this class, or give it devices with more storage"))
    return out


def report(scenario: Scenario) -> Report:
    fleet = _Fleet(scenario)
    classes = [estimate_class(scenario, fleet, c) for c in scenario.user_classes]
    return Report(scenario.name, classes, [a for c in classes for a in advise(c)])


def compare(a: Report, b: Report) -> list[str]:
    """What-if lines: each class's first sync per network in scenario a, then in b."""
    lines: list[str] = []
    after = {c.user_class: c for c in b.classes}
    for before in a.classes:
        other = after.get(before.user_class)
        if other is None:
            continue
        for network in sorted(set(before.first_sync_s) | set(other.first_sync_s)):
            x, y = before.first_sync_s.get(network), other.first_sync_s.get(network)
            if x is None or y is None:
                continue
            lines.append(f"{before.user_class} on {network}: first sync {x['total']:,.1f} s -> {y['total']:,.1f} s, "
                         f"rows {before.rows:,.0f} -> {other.rows:,.0f}, "
                         f"MB {(before.data_bytes + before.file_bytes) / MIB:,.1f} -> "
                         f"{(other.data_bytes + other.file_bytes) / MIB:,.1f}")
    return lines
