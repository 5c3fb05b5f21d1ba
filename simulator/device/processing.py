"""The device's own work during a sync: storing rows, writing files, reading table metadata.

A phone does not only wait for the network: it parses every page and writes its rows to the offline
store (Power Apps keeps it in a SQLite database on the device), writes each file it downloads, and
builds its local tables from each profile table's metadata. This module holds what that work costs
as plain data: `Processing` (three figures) and the built-in device kinds (`KINDS`). A scenario's
device kind names one (`kind:`) and may override its figures (docs/scenarios.md, Device
processing). The sync engine spends the time (`SyncEngine._process`) as real time, like a transfer.

There is no public figure for how fast the Power Apps mobile app stores rows on a given phone. The
named kinds are anchored on what is published for comparable clients and storage, and say so figure
by figure; where a figure is an assumption it says "assumption". Calibrate from your own devices:
time a first sync of a known profile on the device (rows, tables, file MB) on a fast network, and
set `store_rows_per_s`, `write_file_mb_per_s` and `metadata_s_per_table` from it.

Sources (consulted for issue #15):
[R] Resco, "Fine-tuning the sync downloader" (resco.net/support/sync-downloader): for Resco Mobile CRM,
    an offline client of the same Dynamics/Dataverse data, "~1 ms/rec can be considered as a solid
    performance" for a full sync's download (network and storing together, so the device's part is
    at most that); and docs.resco.net/wiki/Deep_dive:_Sync_download_optimization: a desktop client's
    full sync of 23.9 million records at 0.73 ms/rec ("good", 3 threads) and 0.26 ms/rec
    ("exceptional", 4 threads and a large cache).
[S] Samsung's announcements of eUFS 3.0 (2019: 410 MB/s sequential write, "nearly 1.6 times" eUFS
    2.1's, so about 260 MB/s) and eUFS 3.1 (2020: over 1,200 MB/s; for comparison "a SATA-based PC
    (540MB/s)" and "a UHS-I microSD card (90MB/s)"), as reported by TechSpot and Android Central.
[A] AnandTech's tablet storage tests with AndroBench (Galaxy Note 8.0 review, 2013): the figures
    benchmarks quote are peak sequential speeds, not sustained writes.
[X] Axsy, "Sync benchmark information" (help.axsy.com): for an offline-first field app on 4G or
    better, "the most significant factor affecting the initial sync duration is the processing
    power of the mobile device".
[M] Microsoft Learn, learn.microsoft.com/power-apps/mobile/mobile-offline-works-overview: the offline
    profile's data is stored on the device "in a SQLite-based cache".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

KindName = Literal["low_end_phone", "mid_range_phone", "tablet", "laptop"]
KIND_NAMES: tuple[str, ...] = get_args(KindName)
MIB = 1 << 20  # `_mb` fields are MiB, as everywhere in a scenario


@dataclass(frozen=True, slots=True)
class Processing:
    """What the device's own work costs. None (or 0 for metadata) means that work takes no time.

    store_rows_per_s: rows of a page written to the offline store per second (new, changed or
    deleted rows; rows already held at the same version are skipped and cost nothing).
    write_file_mb_per_s: MiB of file bytes written per second.
    metadata_s_per_table: seconds to take in one profile table's metadata (first sync).
    """

    store_rows_per_s: float | None = None
    write_file_mb_per_s: float | None = None
    metadata_s_per_table: float = 0.0

    def __post_init__(self) -> None:
        for name in ("store_rows_per_s", "write_file_mb_per_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 (or None: free), got {value}")
        if not self.metadata_s_per_table >= 0:
            raise ValueError(f"metadata_s_per_table must be >= 0, got {self.metadata_s_per_table}")

    @property
    def free(self) -> bool:
        """True when no work costs anything (the default: today's behaviour)."""
        return self.store_rows_per_s is None and self.write_file_mb_per_s is None and not self.metadata_s_per_table

    def rows_s(self, rows: float) -> float:
        """Seconds to store `rows` rows."""
        return 0.0 if self.store_rows_per_s is None or rows <= 0 else rows / self.store_rows_per_s

    def files_s(self, nbytes: float) -> float:
        """Seconds to write `nbytes` bytes of files."""
        return 0.0 if self.write_file_mb_per_s is None or nbytes <= 0 else nbytes / (self.write_file_mb_per_s * MIB)

    def metadata_s(self, tables: int) -> float:
        """Seconds to take in the metadata of `tables` profile tables."""
        return max(0, tables) * self.metadata_s_per_table


NO_PROCESSING = Processing()

KINDS: dict[str, Processing] = {
    # An entry-level Android phone (eMMC storage, a slow CPU).
    "low_end_phone": Processing(
        # Assumption: 2.5 times slower than the mid-range phone (entry-level phones' CPUs and eMMC
        # storage are several times slower than mid-range ones'; [X]: the CPU decides first sync).
        store_rows_per_s=400,
        # Assumption: 40 MiB/s sustained, below the 90 MB/s [S] quotes for a UHS-I microSD card and
        # far below UFS (eMMC-class storage; peak figures overstate sustained writes [A]).
        write_file_mb_per_s=40,
        # Assumption: 1 s per table (parsing its definition and creating its local table and indexes).
        metadata_s_per_table=1.0,
    ),
    # A mid-range phone of recent years (UFS 2.x storage).
    "mid_range_phone": Processing(
        # [R]: ~1 ms per record is a solid full-sync download rate for an offline Dynamics client,
        # network included; as the device's share alone, 1,000 rows/s errs on the slow side.
        store_rows_per_s=1000,
        # Assumption: 120 MiB/s, about half of eUFS 2.1's ~260 MB/s peak sequential write [S]
        # (sustained writes through an app are below benchmark peaks [A]).
        write_file_mb_per_s=120,
        # Assumption: 0.5 s per table.
        metadata_s_per_table=0.5,
    ),
    # A field tablet (iPad or Android tablet).
    "tablet": Processing(
        # Assumption: between the mid-range phone and the laptop.
        store_rows_per_s=1500,
        # Assumption: 150 MiB/s, between UFS 2.x phones and a laptop's SSD.
        write_file_mb_per_s=150,
        # Assumption: 0.3 s per table.
        metadata_s_per_table=0.3,
    ),
    # A Windows laptop (SSD).
    "laptop": Processing(
        # [R]: a desktop client's full sync ran at 0.73 ms/rec (1,370 rows/s) out of the box and
        # 0.26 ms/rec (3,850 rows/s) tuned, network included; 3,000 rows/s lies between.
        store_rows_per_s=3000,
        # Assumption: 250 MiB/s, about half of a SATA SSD's 540 MB/s [S].
        write_file_mb_per_s=250,
        # Assumption: 0.1 s per table.
        metadata_s_per_table=0.1,
    ),
}
assert set(KINDS) == set(KIND_NAMES)


def processing_for(kind: str | None, store_rows_per_s: float | None = None,
                   write_file_mb_per_s: float | None = None,
                   metadata_s_per_table: float | None = None) -> Processing:
    """A named kind's figures (none: every work free) with the given ones in their place."""
    base = NO_PROCESSING if kind is None else KINDS[kind]
    return Processing(
        store_rows_per_s=base.store_rows_per_s if store_rows_per_s is None else store_rows_per_s,
        write_file_mb_per_s=base.write_file_mb_per_s if write_file_mb_per_s is None else write_file_mb_per_s,
        metadata_s_per_table=base.metadata_s_per_table if metadata_s_per_table is None else metadata_s_per_table)
