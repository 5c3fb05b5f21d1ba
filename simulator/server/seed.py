"""Deterministic, fast seed data: users, rows and file contents derived from the scenario seed.

Everything comes from `scenario.seed`: one numpy generator for users and one per table (children of
`SeedSequence(seed)`, indexed by the table's position in the scenario), and Faker pools seeded per
provider. Faker is slow per call, so each provider fills a pool of values once and rows sample it by
index; numbers, owners, dates, sizes and GUIDs are drawn as numpy arrays per table, and the rows are
built in one loop. Times are scenario seconds since the Unix epoch; sizes are bytes unless named `_kb`.
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np
import orjson

from simulator import seeds
from simulator.protocol.ids import ascii_rows, new_guid, new_guids  # noqa: F401  (new_guid re-exported)
from simulator.scenario import ColumnDef, Privilege, Scenario, TableDef
from simulator.server.store import FileInfo, Row, Store, TableStore, User, lookup_key

BACKOFFICE = "backoffice"  # name and user_class of the extra user who may edit every row
POOL_SIZE = 1000  # Faker values generated per provider
FILE_BLOCK = 64 * 1024  # file contents repeat a pseudo-random block of this many bytes
DAY_S = 86400.0
CREATED_SPREAD_S = 365 * DAY_S  # createdon is up to a year before modifiedon
DATETIME_SPREAD_S = 2 * 365 * DAY_S  # datetime columns lie in the two years before `now`
PAD_VARIANTS = 8  # distinct padding strings per length bucket (rows share them to save memory)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (also a decorator): seeding allocates millions of objects
    and frees none, so collections would only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- randomness ---------------------------------------------------------------------------------
def _rngs(scenario: Scenario) -> tuple[np.random.Generator, list[np.random.Generator]]:
    """The users' generator and one generator per table, by the table's index in the scenario."""
    return seeds.data_rngs(scenario.seed, len(scenario.tables))


# --- Faker pools ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _faker() -> Any:
    from faker import Faker  # imported lazily: it takes about half a second

    return Faker("en_US")


@lru_cache(maxsize=64)
def _pool(seed: int, provider: str) -> tuple[str, ...]:
    """POOL_SIZE values of a Faker provider, seeded by (seed, provider) so pools are order-independent."""
    fake = _faker()
    method = getattr(fake, provider, None) if not provider.startswith("_") else None
    if not callable(method):
        raise ValueError(f"faker provider {provider!r} does not exist (try company, name, address, sentence)")
    fake.seed_instance(f"{seed}/{provider}")
    return tuple(str(method()) for _ in range(POOL_SIZE))


class _TextPool:
    """A Faker pool truncated to a length, as a numpy object array plus each value's encoded JSON size."""

    def __init__(self, seed: int, provider: str, max_length: int) -> None:
        values = [v[:max_length] for v in _pool(seed, provider)]
        self.values = np.array(values, dtype=object)
        self.json_len = np.array([len(orjson.dumps(v)) for v in values], dtype=np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray]:
        """`n` values drawn uniformly, and their encoded sizes in bytes."""
        idx = rng.integers(0, len(self.values), n)
        return self.values[idx].tolist(), self.json_len[idx]


def _iso(seconds: np.ndarray) -> list[str]:
    """Epoch seconds (years 1000-9999) as ISO 8601 UTC strings, "2024-01-02T03:04:05Z"."""
    secs = np.floor(seconds).astype(np.int64)
    stamps = secs.astype("datetime64[s]")
    days = stamps.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    years = days.astype("datetime64[Y]")
    of_day = secs - days.astype(np.int64) * 86400
    fields = (
        (0, 4, years.astype(np.int64) + 1970),
        (5, 2, (months - years.astype("datetime64[M]")).astype(np.int64) + 1),
        (8, 2, (days - months.astype("datetime64[D]")).astype(np.int64) + 1),
        (11, 2, of_day // 3600),
        (14, 2, of_day // 60 % 60),
        (17, 2, of_day % 60),
    )
    out = np.empty((len(secs), 20), dtype=np.uint8)
    out[:] = np.frombuffer(b"0000-00-00T00:00:00Z", dtype=np.uint8)
    for pos, width, value in fields:
        for k in range(width):
            out[:, pos + width - 1 - k] = 48 + value // 10**k % 10
    return ascii_rows(out)


# --- users ---------------------------------------------------------------------------------------
def _make_users(scenario: Scenario, rng: np.random.Generator) -> list[User]:
    counts = scenario.class_counts()
    specs: list[tuple[str, str, int, dict[str, Privilege]]] = []  # name, class, team, privileges
    team_base = 0
    for uc in scenario.user_classes:
        for n in range(counts[uc.name]):
            specs.append((f"{uc.name}-{n + 1:04d}", uc.name, team_base + n % uc.teams, dict(uc.privileges)))
        team_base += uc.teams
    full = Privilege(read="org", write="org", delete="org")
    specs.append((BACKOFFICE, BACKOFFICE, team_base, {t.logical_name: full for t in scenario.tables}))
    ids = new_guids(rng, len(specs))
    return [User(i, ids[i], name, uc, team, privs) for i, (name, uc, team, privs) in enumerate(specs)]


def make_users(scenario: Scenario) -> list[User]:
    """Users of every class in scenario order (`<class>-0001`...), teams round-robin, then `backoffice`.

    Team indexes are global: the first class has teams 0..teams-1, the next class follows, and the
    back-office user has a team of its own. Ids come from the scenario seed.
    """
    return _make_users(scenario, _rngs(scenario)[0])


def _is_backoffice(user: User) -> bool:
    return user.name == BACKOFFICE and user.user_class == BACKOFFICE


def _owner_candidates(meta: TableDef, users: list[User]) -> np.ndarray:
    """Indexes of the users who may own the table's rows (the back-office user if nobody else)."""
    if not users:
        raise ValueError(f"table {meta.logical_name!r}: no users to own rows (make them with make_users)")
    if meta.owned_by:
        wanted = set(meta.owned_by)
        picked = [u.index for u in users if u.user_class in wanted and not _is_backoffice(u)]
    else:
        picked = [u.index for u in users if not _is_backoffice(u)]
    if not picked:
        picked = [u.index for u in users if _is_backoffice(u)] or [users[-1].index]
    return np.array(picked, dtype=np.int64)


# --- padding ---------------------------------------------------------------------------------------
class _Padding:
    """Padding strings of quantized lengths cut from a blob of Faker sentences, shared between rows."""

    def __init__(self, seed: int, longest: int, step: int) -> None:
        sentences = _pool(seed, "sentence")
        cycle = " ".join(sentences) + " "
        offsets = np.cumsum([0] + [len(x) + 1 for x in sentences])
        stride = max(1, len(sentences) // PAD_VARIANTS)
        self.starts = [int(offsets[(k * stride) % len(sentences)]) for k in range(PAD_VARIANTS)]
        self.text = cycle * ((longest + step) // len(cycle) + 2)  # any start in the first cycle fits
        self.step = step

    def strings(self, lengths: np.ndarray, rng: np.random.Generator) -> list[str]:
        """One string per row, about lengths[i] characters long (within step/2)."""
        buckets = np.maximum(np.rint(lengths / self.step).astype(np.int64), 0)
        keys = buckets * PAD_VARIANTS + rng.integers(0, PAD_VARIANTS, len(lengths))
        unique, inverse = np.unique(keys, return_inverse=True)
        made = np.empty(len(unique), dtype=object)
        for i, key in enumerate(unique.tolist()):
            start = self.starts[key % PAD_VARIANTS]
            made[i] = self.text[start : start + (key // PAD_VARIANTS) * self.step].rstrip()
        return made[inverse.reshape(-1)].tolist()


def _pad_column(meta: TableDef) -> str:
    taken = {c.name for c in meta.columns} | {meta.primary_name, meta.id_column}
    return "description" if "description" not in taken else "syncsim_padding"


# --- rows ----------------------------------------------------------------------------------------
def _file_column(
    col: ColumnDef, files: list[dict[str, FileInfo] | None], rng: np.random.Generator, words: _TextPool
) -> np.ndarray:
    """Add a FileInfo to `col.fill` of the rows' file dicts; returns each row's encoded size of the
    three file fields (id, name, size) in bytes."""
    assert col.size is not None
    dist = col.size
    n = len(files)
    has = rng.random(n) < col.fill
    k = int(has.sum())
    lo = math.ceil(dist.min_kb * 1024)
    hi = max(lo, math.floor(dist.max_kb * 1024))
    sizes = np.clip(np.rint(dist.median_kb * 1024 * np.exp(dist.sigma * rng.standard_normal(k))), lo, hi)
    names, name_len = words.sample(rng, k)
    seeds = rng.integers(0, 1 << 31, k).tolist()
    ids = new_guids(rng, k)
    where = np.flatnonzero(has).tolist()
    for i, file_id, size, name, seed in zip(
        where, ids, sizes.astype(np.int64).tolist(), names, seeds, strict=True
    ):
        info = FileInfo(file_id=file_id, size=size, name=f"{name}.jpg", seed=seed, mimetype="image/jpeg")
        row = files[i]
        if row is None:
            files[i] = {col.name: info}
        else:
            row[col.name] = info
    enc = np.full(n, 12, dtype=np.int64)  # three nulls
    enc[has] = 38 + name_len + 4 + np.floor(np.log10(np.maximum(sizes, 1))).astype(np.int64) + 1
    return enc


def _column_values(
    col: ColumnDef, n: int, seed: int, rng: np.random.Generator, store: Store, now: float
) -> tuple[list[Any], np.ndarray | None]:
    """Values of one non-file column for `n` rows, and their encoded sizes when they vary a lot."""
    if col.type == "text":
        return _TextPool(seed, col.faker or "sentence", col.max_length).sample(rng, n)
    if col.type == "integer":
        lo = math.ceil(col.min)
        hi = max(lo, math.floor(col.max))
        return rng.integers(lo, hi + 1, n).tolist(), None
    if col.type == "decimal":
        low, high = math.ceil(col.min * 100) / 100, math.floor(col.max * 100) / 100
        high = max(low, high)
        return np.clip(np.round(rng.uniform(low, high, n), 2), low, high).tolist(), None
    if col.type == "datetime":
        return _iso(now - rng.uniform(0, DATETIME_SPREAD_S, n)), None
    if col.type == "choice":
        options = np.array(list((col.options or {}).values()), dtype=np.int64)
        return options[rng.integers(0, len(options), n)].tolist(), None
    if col.type == "lookup":
        target = store.tables.get(col.target or "")
        has = rng.random(n) < col.fill
        picks = rng.integers(0, max(1, len(target) if target else 0), n)
        if target is None or len(target) == 0:
            return [None] * n, np.full(n, 4, dtype=np.int64)
        ids = np.array(list(target.rows), dtype=object)[picks]
        ids[~has] = None
        return ids.tolist(), np.where(has, 38, 4)
    raise ValueError(f"column {col.name!r}: no seed values for type {col.type!r}")


def _unique_values(col: ColumnDef, n: int) -> list[Any]:
    """Distinct values for an alternate key's first column: `ABC-000001`... (text), min, min+1... (integer)."""
    if col.type == "integer":
        return list(range(math.ceil(col.min), math.ceil(col.min) + n))
    prefix = "".join(ch for ch in col.name.upper() if ch.isalpha())[:3] or "KEY"
    return [f"{prefix}-{i:06d}" for i in range(1, n + 1)]


@_gc_paused()
def seed_table(
    table: TableStore,
    scenario: Scenario,
    users: list[User],
    store: Store,
    now: float,
    rng: np.random.Generator,
) -> None:
    """Add `meta.rows` rows to the table with table.load (unlogged), versions from the store's counter.

    `now` is scenario time (epoch seconds); modifiedon lies within `modified_within_days` before it.
    Each row is padded with a text column so its encoded JSON is about `meta.row_bytes` bytes.
    """
    meta = table.meta
    n = meta.rows
    if n <= 0:
        return
    seed = scenario.seed
    ids = new_guids(rng, n)
    candidates = _owner_candidates(meta, users)
    owner_arr = candidates[rng.integers(0, len(candidates), n)]
    team_of = np.array([u.team for u in users], dtype=np.int64)
    owners, teams = owner_arr.tolist(), team_of[owner_arr].tolist()
    modified_arr = now - rng.uniform(0, meta.modified_within_days * DAY_S, n)
    modified = modified_arr.tolist()

    keys: list[str] = []
    columns: list[list[Any]] = []
    var_len = np.zeros(n, dtype=np.int64)  # the part of each row's encoded size that varies a lot
    if meta.column(meta.primary_name) is None:
        names, name_len = _TextPool(seed, "company", 200).sample(rng, n)
        keys.append(meta.primary_name)
        columns.append(names)
        var_len += name_len
    files: list[dict[str, FileInfo] | None] = [None] * n
    words: _TextPool | None = None
    key_firsts = {k.columns[0] for k in meta.keys}
    for col in meta.columns:
        if col.type == "file":
            words = words or _TextPool(seed, "word", 60)
            var_len += _file_column(col, files, rng, words)
            continue
        values, enc = _column_values(col, n, seed, rng, store, now)
        if col.name in key_firsts:  # an alternate key's first column: every row a value of its own
            values, enc = _unique_values(col, n), None
        keys.append(lookup_key(col.name) if col.type == "lookup" else col.name)
        columns.append(values)
        if enc is not None:
            var_len += enc
    keys += ["createdon", "modifiedon"]
    columns += [_iso(modified_arr - rng.uniform(0, CREATED_SPREAD_S, n)), _iso(modified_arr)]

    first = store.version + 1
    pad = _padding_lengths(table, first, ids, keys, columns, files, var_len)
    if pad is not None:
        keys.append(_pad_column(meta))
        step = max(1, round(meta.row_bytes * 0.01))
        columns.append(_Padding(seed, int(pad.max()), step).strings(pad, rng))

    store.version += n
    # the loops run in C (map): one dict and one Row per row, then table.load
    row_values = map(dict, map(zip, repeat(keys), zip(*columns, strict=True)))
    deque(map(table.load, map(Row, ids, range(first, first + n), owners, teams, modified, row_values, files)), 0)


def _padding_lengths(
    table: TableStore,
    version: int,
    ids: list[str],
    keys: list[str],
    columns: list[list[Any]],
    files: list[dict[str, FileInfo] | None],
    var_len: np.ndarray,
) -> np.ndarray | None:
    """Characters of padding per row to reach meta.row_bytes, or None when most rows need none.

    The encoded size of a sample of unpadded rows gives the fixed part; `var_len` the per-row rest.
    """
    meta = table.meta
    n = len(ids)
    m = min(n, 64)
    fixed = []
    for i in range(m):
        values = {k: c[i] for k, c in zip(keys, columns, strict=True)}
        row = Row(ids[i], version + i, 0, 0, 0.0, values, files[i])
        fixed.append(len(orjson.dumps(table.render(row))) - int(var_len[i]))
    overhead = float(np.mean(fixed)) + len(orjson.dumps(_pad_column(meta))) + 4  # ,"key":"" around the text
    want = meta.row_bytes - overhead - var_len
    if float(np.median(want)) <= 0:
        return None
    return np.maximum(want, 0)


def build_store(scenario: Scenario, now: float) -> Store:
    """Users plus every table seeded, lookup targets before the tables that point at them.

    `now` is scenario time in epoch seconds. Same scenario (and seed) gives identical users and rows.
    """
    user_rng, table_rngs = _rngs(scenario)
    users = _make_users(scenario, user_rng)
    store = Store(scenario.tables, users)
    for index in _dependency_order(scenario.tables):
        meta = scenario.tables[index]
        seed_table(store.table(meta.logical_name), scenario, users, store, now, table_rngs[index])
    return store


def _dependency_order(tables: list[TableDef]) -> list[int]:
    """Table indexes with lookup targets first; tables in a cycle keep their given order."""
    names = {t.logical_name: i for i, t in enumerate(tables)}
    deps = [
        {names[c.target] for c in t.columns if c.type == "lookup" and c.target in names} - {i}
        for i, t in enumerate(tables)
    ]
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(tables):
        ready = [i for i in range(len(tables)) if i not in done and deps[i] <= done]
        if not ready:  # a cycle: take the first remaining table as it is
            ready = [next(i for i in range(len(tables)) if i not in done)]
        order.append(ready[0])
        done.add(ready[0])
    return order


# --- file contents ---------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _file_block(seed: int) -> bytes:
    return seeds.file_rng(seed).bytes(FILE_BLOCK)


def file_bytes(info: FileInfo, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file, clipped to [0, info.size]: info.data if set, else a block from info.seed.

    Generated content repeats a 64 KiB pseudo-random block, so any split of a range concatenates to it.
    """
    if info.data is not None:
        return info.data[max(0, start) : max(0, end)]
    start, end = max(0, start), min(end, info.size)
    if end <= start:
        return b""
    block = _file_block(info.seed)
    offset = start % FILE_BLOCK
    length = end - start
    if offset + length <= FILE_BLOCK:
        return block[offset : offset + length]
    return (block * ((offset + length) // FILE_BLOCK + 1))[offset : offset + length]
