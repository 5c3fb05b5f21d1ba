"""The device's local store: per table, row id -> (version, size, contents digest), plus downloaded
files.

Only what sync needs is kept (no payloads, only a CRC-32 of each row's contents as received), so a
large fleet fits in memory: the three are packed into one int per row. Sizes count against the
device's storage capacity; an insert that would pass it raises StorageFull. A digest of 0 means the
contents are not known: the device changed the row itself and has not received it since.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

_SIZE_BITS = 24  # row sizes up to 16 MiB packed with the version and the digest into one int
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_VERSION_BITS = 40
_VERSION_MASK = (1 << _VERSION_BITS) - 1
_DIGEST_SHIFT = _SIZE_BITS + _VERSION_BITS


def unpack(packed: int) -> tuple[int, int, int]:
    """(version, size, contents digest) of a stored row."""
    return (packed >> _SIZE_BITS) & _VERSION_MASK, packed & _SIZE_MASK, packed >> _DIGEST_SHIFT


def pack(version: int, size: int, digest: int = 0) -> int:
    return (digest << _DIGEST_SHIFT) | (version << _SIZE_BITS) | min(size, _SIZE_MASK)


class StorageFull(Exception):
    """The device cannot hold more data (Power Apps: DEVICE_ERROR 2007 "Disk is full")."""


@dataclass(slots=True)
class LocalStore:
    """Rows and files held by one device, in bytes against `capacity_bytes`."""

    capacity_bytes: int
    tables: dict[str, dict[str, int]] = field(default_factory=dict)  # id -> pack(version, size, digest)
    files: dict[str, int] = field(default_factory=dict)  # "<table>/<row id>/<column>" -> bytes held
    file_ids: dict[str, str] = field(default_factory=dict)  # key -> the server's file id (column value)
    file_crcs: dict[str, int] = field(default_factory=dict)  # key -> CRC-32 of the bytes held, in order
    used_bytes: int = 0

    def version(self, table: str, row_id: str) -> int | None:
        rows = self.tables.get(table)
        packed = None if rows is None else rows.get(row_id)
        return None if packed is None else (packed >> _SIZE_BITS) & _VERSION_MASK

    def ids(self, table: str) -> dict[str, int]:
        return self.tables.setdefault(table, {})

    def reserve(self, nbytes: int) -> None:
        """Check that nbytes more fit; raises StorageFull otherwise."""
        if self.used_bytes + nbytes > self.capacity_bytes:
            raise StorageFull(
                f"storage full: {self.used_bytes + nbytes:,} bytes needed, capacity {self.capacity_bytes:,}"
            )

    def put(self, table: str, row_id: str, version: int, size: int, digest: int = 0) -> None:
        rows = self.ids(table)
        old = rows.get(row_id)
        old_size = 0 if old is None else old & _SIZE_MASK
        size = min(size, _SIZE_MASK)
        if size > old_size:
            self.reserve(size - old_size)
        rows[row_id] = pack(version, size, digest)
        self.used_bytes += size - old_size

    def put_many(self, table: str, ids: Sequence[str], versions: Sequence[int], sizes: Sequence[int],
                 digests: Sequence[int]) -> None:
        """Insert or replace rows: ids[i] at versions[i], sizes[i] bytes, contents digests[i]; all or
        none (StorageFull)."""
        held = self.ids(table)
        growth = sum(min(size, _SIZE_MASK) - (held[i] & _SIZE_MASK if i in held else 0)
                     for i, size in zip(ids, sizes, strict=True))
        if growth > 0:
            self.reserve(growth)
        for row_id, version, size, digest in zip(ids, versions, sizes, digests, strict=True):
            held[row_id] = pack(version, size, digest)
        self.used_bytes += growth

    def set_version(self, table: str, row_id: str, version: int) -> None:
        """The device's own write made this version: its contents are the device's edit applied to
        the row, which it does not keep (digest 0 until it receives the row again)."""
        rows = self.ids(table)
        old = rows.get(row_id)
        if old is not None:
            rows[row_id] = pack(version, old & _SIZE_MASK)

    def remove(self, table: str, row_id: str) -> bool:
        old = self.tables.get(table, {}).pop(row_id, None)
        if old is None:
            return False
        self.used_bytes -= old & _SIZE_MASK
        prefix = f"{table}/{row_id}/"
        for key in [k for k in self.files if k.startswith(prefix)]:
            self.drop_file(key)
        return True

    def start_file(self, key: str, file_id: str) -> None:
        """Begin holding a (new) file under key: any bytes of an older one are dropped."""
        if self.file_ids.get(key) != file_id:
            self.drop_file(key)
            self.file_ids[key] = file_id
            self.files[key] = 0

    def add_file_bytes(self, key: str, chunk: bytes) -> None:
        """Append the next bytes of a file (in order), counting them against the capacity."""
        self.reserve(len(chunk))
        self.files[key] = self.files.get(key, 0) + len(chunk)
        self.file_crcs[key] = zlib.crc32(chunk, self.file_crcs.get(key, 0))
        self.used_bytes += len(chunk)

    def drop_file(self, key: str) -> None:
        self.used_bytes -= self.files.pop(key, 0)
        self.file_ids.pop(key, None)
        self.file_crcs.pop(key, None)

    def file_snapshot(self) -> dict[str, tuple[int, int]]:
        """{"<table>/<row id>/<column>": (bytes held, CRC-32)} for end-of-run checks."""
        return {key: (n, self.file_crcs.get(key, 0)) for key, n in self.files.items()}

    def row_count(self) -> int:
        return sum(len(rows) for rows in self.tables.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        """{table: {row id: packed}} (see `unpack`) for end-of-run checks: a copy of what it holds."""
        return {t: dict(rows) for t, rows in self.tables.items()}
