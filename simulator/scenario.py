"""Scenario files: pydantic models, YAML loading, and errors that name file, field and allowed values.

Models and validation only: it reads plain data of other modules (network presets, device kind
names, default keep-alive) but builds no runtime object; fleet.py binds a scenario to the specs the
engine takes (a device's processing, its connection).

Every field is documented in docs/scenarios.md. Durations are in scenario seconds (`_s`), sizes in
KiB (`_kb`) or MiB (`_mb`), rates per scenario hour or second as their names say.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from simulator.device.processing import KindName as ProcessingKind
from simulator.network.faults.connection import DEFAULT_KEEPALIVE_S
from simulator.network.presets import PRESETS as NETWORK_PRESETS
from simulator.network.presets import NetworkPreset as NetworkValues
from simulator.yaml_file import YamlFileError, read_yaml

Depth = Literal["none", "user", "team", "org"]
ColumnType = Literal["text", "integer", "decimal", "datetime", "choice", "lookup", "file"]
FilterKind = Literal["all", "owner", "team", "modified_within_days", "related"]
NetworkPreset = Literal["wifi", "4g", "3g", "2g", "edge", "satellite", "loopback"]


MAX_SEED = 2**63 - 1  # seeds are carried as 64-bit signed integers (tokens, summaries, other tools)


class ScenarioError(Exception):
    """A scenario that cannot be used; the message names the file, the field and what is allowed."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf and .nan are refused


class SizeDistribution(_Model):
    """A lognormal size in KiB: median and sigma, clipped to [min_kb, max_kb]."""

    median_kb: float = Field(gt=0)
    sigma: float = Field(default=1.0, ge=0)
    min_kb: float = Field(default=1, ge=0)
    max_kb: float = Field(default=16384, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> SizeDistribution:
        if self.min_kb > self.max_kb:
            raise ValueError(f"min_kb ({self.min_kb:g}) is above max_kb ({self.max_kb:g})")
        return self


class ColumnDef(_Model):
    """A typed column. `faker` names a Faker provider for text; `options` maps choice labels to values."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: ColumnType
    faker: str | None = None
    max_length: int = Field(default=200, gt=0)
    min: float = 0
    max: float = 1000
    options: dict[str, int] | None = None
    target: str | None = None  # lookup: logical name of the referenced table
    size: SizeDistribution | None = None  # file: size distribution
    fill: float = Field(default=1.0, ge=0, le=1)  # share of rows with a value (files, lookups)

    @model_validator(mode="after")
    def _check_kind(self) -> ColumnDef:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        if self.type == "choice" and not self.options:
            raise ValueError("a choice column needs 'options' (label: value)")
        if self.type == "lookup" and not self.target:
            raise ValueError("a lookup column needs 'target' (the logical name of a table)")
        if self.type == "file" and self.size is None:
            raise ValueError("a file column needs 'size' (median_kb, sigma, min_kb, max_kb)")
        return self


KEY_COLUMN_TYPES = ("text", "integer", "decimal", "choice", "datetime")


class KeyDef(_Model):
    """An alternate key: its name and columns (one, or up to 16 for a composite key). Seeded rows get
    unique values in the key's first column (text: `<ABC>-000001`, integer: min, min+1, ...)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    columns: list[str] = Field(min_length=1, max_length=16)


class TableDef(_Model):
    """A Dataverse table: names, columns, how many rows to seed and who owns them."""

    logical_name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entity_set: str | None = None  # default: logical_name + "s"
    primary_id: str | None = None  # default: logical_name + "id"
    primary_name: str = "name"
    rows: int = Field(default=100, ge=0, le=3_000_000)
    row_bytes: int = Field(default=1000, ge=64, le=1_000_000)
    columns: list[ColumnDef] = Field(default_factory=list)
    owned_by: list[str] = Field(default_factory=list)  # user classes whose users own rows; [] = all
    conflict_detection: bool | None = None  # None: the server default
    change_tracking: bool = True
    modified_within_days: float = Field(default=90, ge=0)  # seeded modifiedon spread before start
    keys: list[KeyDef] = Field(default_factory=list)  # alternate keys (EntityDefinitions(...)/Keys)

    @model_validator(mode="after")
    def _check_keys(self) -> TableDef:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError(f"keys: a key name is used twice ({', '.join(names)})")
        for k in self.keys:
            for name in k.columns:
                col = self.column(name)
                if col is None:
                    raise ValueError(f"keys: key {k.name!r} names column {name!r}, which table {self.logical_name} "
                                     f"does not have (columns: {', '.join(c.name for c in self.columns) or 'none'})")
                if col.type not in KEY_COLUMN_TYPES:
                    raise ValueError(f"keys: key {k.name!r} column {name!r} is a {col.type} column; key columns "
                                     f"are {', '.join(KEY_COLUMN_TYPES)}")
            first = self.column(k.columns[0])
            assert first is not None
            if first.type not in ("text", "integer"):
                raise ValueError(f"keys: key {k.name!r} starts with {first.name!r}, a {first.type} column; the first "
                                 "column of a key is text or integer (seeded rows get unique values in it)")
            need = 4 + max(6, len(str(self.rows)))  # "ABC-000001"
            if first.type == "text" and first.max_length < need:
                raise ValueError(f"keys: key {k.name!r} column {first.name!r} needs max_length >= {need} for its "
                                 "unique seeded values")
            if first.type == "integer" and first.max - first.min + 1 < self.rows:
                raise ValueError(f"keys: key {k.name!r} column {first.name!r} has {first.max - first.min + 1:g} "
                                 f"values between min and max, fewer than the table's {self.rows} rows")
        return self

    @property
    def set_name(self) -> str:
        return self.entity_set or f"{self.logical_name}s"

    @property
    def id_column(self) -> str:
        return self.primary_id or f"{self.logical_name}id"

    def column(self, name: str) -> ColumnDef | None:
        return next((c for c in self.columns if c.name == name), None)


class Limits(_Model):
    """Dataverse service protection per user over a sliding window (scenario seconds)."""

    requests: int = Field(default=6000, gt=0)
    execution_time_s: float = Field(default=1200, gt=0)
    concurrent: int = Field(default=52, gt=0)
    window_s: float = Field(default=300, gt=0)


class Faults(_Model):
    """Server-side faults, also settable at run time through /_syncsim/faults."""

    latency_ms: float = Field(default=0, ge=0)
    error_rate: float = Field(default=0, ge=0, le=1)  # share of requests answered 503
    drop_rate: float = Field(default=0, ge=0, le=1)  # share of connections closed without answer
    lose_answer_rate: float = Field(default=0, ge=0, le=1)  # share of writes applied, then the connection closed
    cut_rate: float = Field(default=0, ge=0, le=1)  # share of answers (pages, files) cut half-way through


class ServiceCost(_Model):
    """What one request of a kind costs the server in a virtual-time run: `base_ms`, plus `per_row_ms`
    for every row it reads or writes, plus `per_kb_ms` for every KiB of its request and answer bodies
    (milliseconds of server time)."""

    base_ms: float = Field(ge=0)
    per_row_ms: float = Field(default=0, ge=0)
    per_kb_ms: float = Field(default=0, ge=0)


class ServiceModel(_Model):
    """The server's own time in a virtual-time run (docs/scenarios.md, "The server model"): per kind of
    request a cost, and how many requests it works on at once (`concurrency`; more wait their turn,
    first come first served). A request's time is its wait plus its cost; service protection counts
    both as execution time. The defaults are the mock server's own, measured in real time on one core
    (`python -m bench servermodel`): set your environment's from its telemetry."""

    # fitted by `python -m bench servermodel` (2026-12-07, 2-core machine, field_service at 12 devices
    # syncing every 2 minutes: 1,056 requests); "other" was not seen and takes a file request's base
    concurrency: int = Field(default=1, ge=1, le=100_000)
    metadata: ServiceCost = ServiceCost(base_ms=0.75, per_kb_ms=0.016)
    read: ServiceCost = ServiceCost(base_ms=0.43, per_row_ms=0.0025, per_kb_ms=0.001)
    delta: ServiceCost = ServiceCost(base_ms=0.56, per_row_ms=0.0034)
    write: ServiceCost = ServiceCost(base_ms=0.2, per_row_ms=0.13)
    batch: ServiceCost = ServiceCost(base_ms=0.84, per_row_ms=0.12, per_kb_ms=0.13)
    file: ServiceCost = ServiceCost(base_ms=0.12)
    other: ServiceCost = ServiceCost(base_ms=0.12)


class ServerSettings(_Model):
    conflict_detection: bool = False  # Power Apps default: off (column-level last writer wins)
    token_retention_days: float = Field(default=7, ge=0, le=365)
    max_page_size: int = Field(default=5000, gt=0, le=5000)
    max_body_mb: float = Field(default=128, gt=0)
    limits: Limits = Limits()
    faults: Faults = Faults()
    token_ttl_s: float = Field(default=86400, gt=0)  # access token lifetime, scenario seconds
    model: ServiceModel = ServiceModel()  # the server's own time in a virtual-time run


class ProfileTable(_Model):
    """One table of an offline profile and its row filter."""

    table: str
    filter: FilterKind = "all"
    days: float | None = Field(default=None, gt=0)  # modified_within_days
    related_table: str | None = None  # related: a profile table this one points at
    via: str | None = None  # related: the lookup column of this table
    files: bool = True  # download this table's file columns
    max_file_kb: float | None = Field(default=None, gt=0)  # skip files above this size

    @model_validator(mode="after")
    def _check_filter(self) -> ProfileTable:
        if self.filter == "modified_within_days" and self.days is None:
            raise ValueError("filter 'modified_within_days' needs 'days'")
        if self.filter == "related" and not (self.related_table and self.via):
            raise ValueError("filter 'related' needs 'related_table' and 'via' (a lookup column)")
        return self


class Privilege(_Model):
    """Access depth per table: none, user (own rows), team (the team's rows), org (all rows)."""

    read: Depth = "org"
    write: Depth = "user"
    create: bool = True
    delete: Depth = "user"


_DEFAULT_PRIVILEGE = Privilege()  # frozen: shared by every table a class has no privilege for


class DeviceKind(_Model):
    storage_mb: float = Field(gt=0)
    share: float = Field(default=1, gt=0)
    name: str = "device"
    # The device's own work (docs/scenarios.md, Device processing): a built-in kind's figures, each
    # replaceable; with neither, storing rows, writing files and reading metadata take no time.
    kind: ProcessingKind | None = None
    store_rows_per_s: float | None = Field(default=None, gt=0)
    write_file_mb_per_s: float | None = Field(default=None, gt=0)  # MiB/s
    metadata_s_per_table: float | None = Field(default=None, ge=0)


class Airplane(_Model):
    """Airplane mode: random on/off with mean durations, and/or fixed windows (scenario seconds)."""

    mean_online_s: float | None = Field(default=None, gt=0)
    mean_offline_s: float | None = Field(default=None, gt=0)
    windows: list[tuple[float, float]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Airplane:
        if (self.mean_online_s is None) != (self.mean_offline_s is None):
            raise ValueError("set both mean_online_s and mean_offline_s, or neither")
        for start, end in self.windows:
            if end <= start:
                raise ValueError(f"airplane window ({start}, {end}) must end after it starts")
        return self


class EditMix(_Model):
    """Relative weights of edit kinds (need not sum to 1, but must not all be 0)."""

    update: float = Field(default=0.8, ge=0)
    create: float = Field(default=0.15, ge=0)
    delete: float = Field(default=0.05, ge=0)

    @model_validator(mode="after")
    def _check_sum(self) -> EditMix:
        if self.update + self.create + self.delete <= 0:
            raise ValueError("at least one of update, create, delete must be above 0")
        return self


class NetworkChange(_Model):
    """At `at_s` scenario seconds after the run's start, the device is on `network` (a preset or the scenario's own)."""

    at_s: float = Field(ge=0)
    network: str


class Roaming(_Model):
    """Random network changes: after about `mean_s` scenario seconds (exponential) on one network,
    the device moves to another, drawn from `networks` by weight."""

    mean_s: float = Field(gt=0)
    networks: dict[str, Annotated[float, Field(gt=0)]] = Field(min_length=2)


class Behaviour(_Model):
    sync_interval_s: float = Field(default=900, gt=0)
    sync_jitter: float = Field(default=0.2, ge=0, le=1)  # +- share of the interval
    edits_per_hour: float = Field(default=4, ge=0)
    edit_mix: EditMix = EditMix()
    edit_tables: list[str] = Field(default_factory=list)  # [] = every profile table
    upload_mode: Literal["batch", "one_by_one"] = "batch"
    page_size: int = Field(default=5000, ge=1, le=5000)  # rows per page the device asks for (odata.maxpagesize)
    # times a request is tried again after a network error or a 5xx (backoff 2, 4, 8... s) before its sync fails
    retries: int = Field(default=6, ge=0, le=20)
    airplane: Airplane = Airplane()
    network_changes: list[NetworkChange] = Field(default_factory=list)  # on a schedule (Wi-Fi at the depot...)
    roaming: Roaming | None = None  # and/or at random


class ConnectionSettings(_Model):
    """A device's HTTP connections as the network model costs them (docs/scenarios.md, Connections)."""

    tls: bool = True  # Dataverse is HTTPS only: TLS 1.3 set-up (one more round trip) and record framing
    keepalive_s: float = Field(default=DEFAULT_KEEPALIVE_S, ge=0)  # lived s an idle connection survives; 0: none


class UserClass(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    count: int | None = Field(default=None, ge=0, strict=True)
    share: float | None = Field(default=None, gt=0, le=1)
    teams: int = Field(default=1, ge=1)
    profile: list[ProfileTable]
    privileges: dict[str, Privilege] = Field(default_factory=dict)  # per table; default Privilege()
    devices: list[DeviceKind] = Field(default_factory=lambda: [DeviceKind(storage_mb=32768)], min_length=1)
    # network name (a preset, or one of the scenario's `networks`) -> share of the class's devices
    networks: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: {"wifi": 1.0}, min_length=1)
    behaviour: Behaviour = Behaviour()
    connection: ConnectionSettings = ConnectionSettings()

    @field_validator("networks")
    @classmethod
    def _check_networks(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        """Each name a preset or one of the scenario's own networks (told by parse_scenario's context)."""
        if info.context is None:
            return value  # validated without the scenario's names: the scenario-level check names them
        known = [*NETWORK_PRESETS, *info.context.get("networks", ())]
        for name in value:
            if name not in known:
                raise ValueError(f"network {name!r} is neither a preset nor one of the scenario's networks: "
                                 f"Input should be {', '.join(repr(k) for k in known)}")
        return value

    @model_validator(mode="after")
    def _check_count(self) -> UserClass:
        if (self.count is None) == (self.share is None):
            raise ValueError("set exactly one of 'count' or 'share'")
        return self

    def privilege(self, table: str) -> Privilege:
        return self.privileges.get(table, _DEFAULT_PRIVILEGE)


class Wave(_Model):
    """A rollout wave: at `at_s`, `count` (or all remaining) users of a class start their app."""

    at_s: float = Field(ge=0)
    user_class: str | None = None  # None: every class
    count: int | None = Field(default=None, ge=0, strict=True)  # None: all remaining


class PrivilegeChange(_Model):
    at_s: float = Field(ge=0)
    user_class: str
    users: int = Field(default=1, ge=1, strict=True)  # the first N users of the class
    table: str
    read: Depth | None = None
    write: Depth | None = None


class HotRows(_Model):
    table: str
    count: int = Field(ge=1, strict=True)
    share: float = Field(default=0.5, ge=0, le=1)  # share of back-office updates aimed at hot rows


class BackOffice(_Model):
    writes_per_s: float = Field(default=0, ge=0)  # scenario time
    tables: list[str] = Field(default_factory=list)  # [] = every table
    mix: EditMix = EditMix(update=0.8, create=0.15, delete=0.05)
    hot_rows: HotRows | None = None
    file_deletes_per_s: float = Field(default=0, ge=0)  # files removed from rows, scenario time


class Storms(_Model):
    """Bursts of extra requests from another client of the same users (e.g. a second app): 429 storms."""

    every_s: float = Field(gt=0)  # scenario seconds between bursts (the first after every_s)
    user_class: str
    users: int = Field(default=1, ge=1)  # the first N users of the class
    requests: int = Field(default=53, ge=1, le=1000)  # concurrent requests per burst and user


class NetworkDef(_Model):
    """A network of the scenario's own, usable wherever a preset name is (units as the presets')."""

    latency_ms: float = Field(ge=0)  # round trip added before each request (mean)
    jitter_ms: float = Field(default=0, ge=0)  # its standard deviation
    down_kbps: float | None = Field(default=None, gt=0)  # None: unlimited
    up_kbps: float | None = Field(default=None, gt=0)
    loss: float = Field(default=0, ge=0, lt=1)  # share of requests failing before they are sent


class Scenario(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    seed: int = Field(default=0, ge=0, le=MAX_SEED, strict=True)  # numpy seeds every generator from it
    duration_s: float = Field(default=3600, gt=0)
    time_scale: float = Field(default=60, gt=0)
    quiet_period_s: float = Field(default=600, ge=0)
    max_devices: int = Field(default=20000, gt=0)
    devices: int | None = Field(default=None, ge=0, strict=True)  # total for classes given by share
    server: ServerSettings = ServerSettings()
    tables: list[TableDef]
    user_classes: list[UserClass]
    rollout: list[Wave] = Field(default_factory=lambda: [Wave(at_s=0)])
    privilege_changes: list[PrivilegeChange] = Field(default_factory=list)
    back_office: BackOffice = BackOffice()
    storms: Storms | None = None
    networks: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")], NetworkDef] = Field(default_factory=dict)

    def network(self, name: str) -> NetworkValues:
        """A network by name: the scenario's own, else the preset."""
        own = self.networks.get(name)
        if own is not None:
            return NetworkValues(own.latency_ms, own.jitter_ms, own.down_kbps, own.up_kbps, own.loss)
        return NETWORK_PRESETS[name]

    @model_validator(mode="after")
    def _check_references(self) -> Scenario:
        _check_scenario(self)
        return self

    def table(self, logical_name: str) -> TableDef:
        for t in self.tables:
            if t.logical_name == logical_name:
                return t
        raise KeyError(logical_name)

    def user_class(self, name: str) -> UserClass:
        for c in self.user_classes:
            if c.name == name:
                return c
        raise KeyError(name)

    def class_counts(self) -> dict[str, int]:
        """Users per class: `count` as given, `share` of `devices` rounded."""
        out: dict[str, int] = {}
        for c in self.user_classes:
            if c.count is not None:
                out[c.name] = c.count
            else:
                out[c.name] = round((self.devices or 0) * (c.share or 0))
        return out


def _check_scenario(s: Scenario) -> None:
    _check_fakers(s)
    for name in s.networks:
        if name in NETWORK_PRESETS:
            raise ValueError(f"networks: {name!r} is a preset's name; give your network another name "
                             f"(presets: {', '.join(NETWORK_PRESETS)})")
    known = [*NETWORK_PRESETS, *s.networks]
    for c in s.user_classes:
        b = c.behaviour
        changes = [ch.network for ch in b.network_changes] + list(b.roaming.networks if b.roaming else ())
        for name in [*c.networks, *changes]:
            if name not in known:
                raise ValueError(f"user class {c.name!r}: network {name!r} is neither a preset nor one of the "
                                 f"scenario's networks (known: {', '.join(known)})")
    tables = {t.logical_name: t for t in s.tables}
    classes = {c.name for c in s.user_classes}
    if len(tables) != len(s.tables):
        raise ValueError("table logical names must be unique")
    if len({t.set_name for t in s.tables}) != len(s.tables):
        raise ValueError("table entity_set names must be unique")
    for t in s.tables:
        names = [c.name for c in t.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {t.logical_name!r}: column names must be unique")
    if len(classes) != len(s.user_classes):
        raise ValueError("user class names must be unique")
    for t in s.tables:
        for col in t.columns:
            if col.type == "lookup" and col.target not in tables:
                raise ValueError(
                    f"table {t.logical_name!r} column {col.name!r}: lookup target {col.target!r} "
                    f"is not a table of this scenario (tables: {sorted(tables)})"
                )
        for owner in t.owned_by:
            if owner not in classes:
                raise ValueError(f"table {t.logical_name!r}: owned_by {owner!r} is not a user class {sorted(classes)}")
    if any(c.share is not None for c in s.user_classes) and s.devices is None:
        raise ValueError("user classes given by 'share' need the scenario's 'devices' total")
    if s.devices is not None and all(c.share is None for c in s.user_classes):
        raise ValueError("'devices' applies to user classes given by 'share'; every class here has a 'count'")
    for c in s.user_classes:
        _check_profile(c, tables)
    for w in s.rollout:
        if w.at_s >= s.duration_s:
            raise ValueError(f"rollout wave at {w.at_s:g}s starts at or after duration_s={s.duration_s:g}")
        if w.user_class is not None and w.user_class not in classes:
            raise ValueError(f"rollout wave at {w.at_s}s: user_class {w.user_class!r} is not one of {sorted(classes)}")
    _check_waves_cover_everyone(s)
    for p in s.privilege_changes:
        if p.at_s >= s.duration_s:
            raise ValueError(f"privilege change at {p.at_s:g}s is at or after duration_s={s.duration_s:g}")
        if p.user_class not in classes:
            raise ValueError(f"privilege change at {p.at_s}s: user_class {p.user_class!r} is not one of {sorted(classes)}")
        if p.table not in tables:
            raise ValueError(f"privilege change at {p.at_s}s: table {p.table!r} is not one of {sorted(tables)}")
        if p.read is None and p.write is None:
            raise ValueError(f"privilege change at {p.at_s:g}s changes nothing: set read and/or write")
    if s.storms is not None and s.storms.user_class not in classes:
        raise ValueError(f"storms.user_class: {s.storms.user_class!r} is not one of {sorted(classes)}")
    for name in s.back_office.tables:
        if name not in tables:
            raise ValueError(f"back_office.tables: {name!r} is not one of {sorted(tables)}")
    hot = s.back_office.hot_rows
    if hot is not None and hot.table not in tables:
        raise ValueError(f"back_office.hot_rows.table: {hot.table!r} is not one of {sorted(tables)}")
    if hot is not None and hot.count > tables[hot.table].rows:
        raise ValueError(f"back_office.hot_rows.count: {hot.count} hot rows of {hot.table!r}, which seeds "
                         f"{tables[hot.table].rows} rows; at most {tables[hot.table].rows}")
    counts = s.class_counts()
    for p in s.privilege_changes:
        if p.users > counts[p.user_class]:
            raise ValueError(f"privilege change at {p.at_s:g}s: users {p.users} of class {p.user_class!r}, which has "
                             f"{counts[p.user_class]}; at most {counts[p.user_class]}")
    if s.storms is not None and s.storms.users > counts[s.storms.user_class]:
        raise ValueError(f"storms.users: {s.storms.users} of class {s.storms.user_class!r}, which has "
                         f"{counts[s.storms.user_class]}; at most {counts[s.storms.user_class]}")
    total = sum(s.class_counts().values())
    if total > s.max_devices:
        raise ValueError(f"{total} devices exceed max_devices={s.max_devices}; raise max_devices to run that many")


def _check_waves_cover_everyone(s: Scenario) -> None:
    """Every user must start in some rollout wave; otherwise it would silently never run."""
    left = s.class_counts()
    for w in sorted(s.rollout, key=lambda w: w.at_s):
        for name in [w.user_class] if w.user_class else list(left):
            if name in left:
                left[name] = 0 if w.count is None else max(0, left[name] - w.count)
    missing = {k: v for k, v in left.items() if v}
    if missing:
        text = ", ".join(f"{v} {k}" for k, v in missing.items())
        raise ValueError(f"rollout leaves users out ({text}); add a last wave without 'count' to start them")


def _check_fakers(s: Scenario) -> None:
    names = {c.faker for t in s.tables for c in t.columns if c.faker}
    if not names:
        return
    fake = _faker()
    for t in s.tables:
        for c in t.columns:
            if c.faker and not callable(getattr(fake, c.faker, None)):
                raise ValueError(f"table {t.logical_name!r} column {c.name!r}: faker {c.faker!r} is not a Faker provider "
                                 "(e.g. name, company, sentence, catch_phrase, city, email, phone_number)")


@lru_cache(maxsize=1)
def _faker() -> Any:
    from faker import Faker

    return Faker("en_US")


def _check_profile(c: UserClass, tables: dict[str, TableDef]) -> None:
    in_profile = {p.table for p in c.profile}
    if len(in_profile) != len(c.profile):
        raise ValueError(f"user class {c.name!r} profile lists a table twice")
    related = {p.table: p.related_table for p in c.profile if p.filter == "related"}
    for start in related:
        seen, table = {start}, related[start]
        while table in related:
            if table in seen:
                raise ValueError(f"user class {c.name!r} profile: related filters loop through {table!r}")
            seen.add(table)
            table = related[table]
    for p in c.profile:
        where = f"user class {c.name!r} profile table {p.table!r}"
        if p.table not in tables:
            raise ValueError(f"{where}: not a table of this scenario (tables: {sorted(tables)})")
        if not tables[p.table].change_tracking:
            raise ValueError(f"{where}: change_tracking is off for this table, so devices cannot sync it")
        if p.filter == "related":
            if p.related_table not in in_profile:
                raise ValueError(
                    f"{where}: related_table {p.related_table!r} is not in this profile "
                    f"(offline views that reference tables outside the profile are unavailable)"
                )
            col = tables[p.table].column(p.via or "")
            if col is None or col.type != "lookup" or col.target != p.related_table:
                raise ValueError(f"{where}: via {p.via!r} must be a lookup column of {p.table!r} to {p.related_table!r}")
        for col in tables[p.table].columns:
            if col.type == "lookup" and col.target not in in_profile:
                raise ValueError(
                    f"{where}: column {col.name!r} looks up {col.target!r}, which is not in the profile "
                    f"(offline views that reference tables outside the profile are unavailable)"
                )
    for table in c.privileges:
        if table not in tables:
            raise ValueError(f"user class {c.name!r} privileges: {table!r} is not one of {sorted(tables)}")
    for table in c.behaviour.edit_tables:
        if table not in in_profile:
            raise ValueError(f"user class {c.name!r} behaviour.edit_tables: {table!r} is not in its profile {sorted(in_profile)}")


def _format_error(path: Path, err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling against docs/scenarios.md)"
    return f"{path}: {loc}: {msg}{shown}"


def parse_scenario(data: Any, path: Path | str = "<scenario>", **overrides: Any) -> Scenario:
    """Validate a scenario mapping. Raises ScenarioError naming file, field path and allowed values.

    `overrides` replace top-level fields before validation (None keeps the file's value); `devices`
    must be an integer from 1 to the scenario's max_devices.
    """
    path = Path(path)
    if data is None:
        raise ScenarioError(f"{path}: the file is empty; a scenario needs at least name, tables and user_classes")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a mapping of fields, got {type(data).__name__}")
    merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    if overrides.get("devices") is not None:
        devices = _devices_override(path, overrides["devices"], merged.get("max_devices", _DEFAULT_MAX_DEVICES))
        merged = _scale_counts({**merged, "devices": devices}, devices)
    own = merged.get("networks")
    context = {"networks": list(own) if isinstance(own, dict) else []}
    try:
        return Scenario.model_validate(merged, context=context)
    except ValidationError as exc:
        lines = [_format_error(path, e) for e in exc.errors()]
        raise ScenarioError("invalid scenario\n  " + "\n  ".join(lines)) from None


_DEFAULT_MAX_DEVICES: int = Scenario.model_fields["max_devices"].default


def _as_int(value: Any) -> int | None:
    """`value` as an int if it is one (numpy integers too), else None; booleans and floats are not."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _devices_override(path: Path, value: Any, max_devices: Any) -> int:
    """The devices override as an int from 1 to max_devices, or a ScenarioError saying what is allowed."""
    devices, limit = _as_int(value), _as_int(max_devices)
    if limit is not None and limit > 0 and devices is not None and devices > limit:
        raise ScenarioError(f"{path}: devices override: {devices} devices exceed max_devices={limit}; "
                            f"give an integer from 1 to {limit}, or raise max_devices in the scenario")
    if devices is None or devices < 1:
        raise ScenarioError(f"{path}: devices override: must be an integer >= 1 (got {value!r})")
    return devices


def _scale_counts(data: dict[str, Any], devices: int) -> dict[str, Any]:
    """--devices on a scenario whose classes have counts: scale them to that total (largest remainder).

    Only valid counts (integers >= 0) are scaled; otherwise the data is returned as is, so validation
    reports the file's own count rather than a scaled one.
    """
    classes = data.get("user_classes")
    if not isinstance(classes, list) or not all(_count_of(c) is not None for c in classes):
        return data
    given = [_count_of(c) or 0 for c in classes]
    total = sum(given)
    if total <= 0:
        return data
    exact = [devices * n / total for n in given]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[: devices - sum(counts)]:
        counts[i] += 1
    scaled = [{**c, "count": n} for c, n in zip(classes, counts, strict=True)]
    rest = {k: v for k, v in data.items() if k != "devices"}
    return {**rest, "user_classes": scaled}


def _count_of(user_class: Any) -> int | None:
    """A user class mapping's `count` if it is an integer >= 0, else None."""
    count = _as_int(user_class.get("count")) if isinstance(user_class, dict) else None
    return count if count is not None and count >= 0 else None


def load_scenario(path: Path | str, **overrides: Any) -> Scenario:
    """Read and validate a scenario YAML file; `overrides` replace top-level fields (seed, devices...)."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except YamlFileError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario(data, path, **overrides)
