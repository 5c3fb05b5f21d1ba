"""End-of-run check: every device's store against the server's snapshot for its user."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.device.store import unpack


@dataclass(slots=True)
class DeviceCheck:
    device: str
    missing: int = 0  # rows the server says the device should hold but it does not
    extra: int = 0  # rows the device holds that it should not
    stale: int = 0  # rows held at an older version than the server's
    altered: int = 0  # rows held at the server's version whose contents differ from the server's
    undelivered: int = 0  # edits still in the outbox
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.stale or self.altered or self.undelivered)


def compare(device: str, held: dict[str, dict[str, int]], expected: dict[str, dict[str, int]],
            undelivered: int, contents: dict[str, dict[str, int]] | None = None) -> DeviceCheck:
    """Compare what a device holds ({table: {id: packed}}, `LocalStore.snapshot`) with what the
    server expects ({table: {id: version}}), and, with `contents` ({table: {id: row_digest}}), the
    contents of every row the device holds at the server's version and received since its last
    own write."""
    out = DeviceCheck(device, undelivered=undelivered)
    for table in sorted(set(held) | set(expected)):
        have, want = held.get(table, {}), expected.get(table, {})
        digests = (contents or {}).get(table, {})
        for row_id, version in want.items():
            packed = have.get(row_id)
            if packed is None:
                out.missing += 1
                _example(out, f"{table}/{row_id}: missing")
                continue
            got, _, digest = unpack(packed)
            if got != version:
                out.stale += 1
                _example(out, f"{table}/{row_id}: version {got}, server {version}")
            elif digest and row_id in digests and digest != digests[row_id]:
                out.altered += 1
                _example(out, f"{table}/{row_id}: v{version} held with other contents than the server's "
                              f"(digest {digest:#010x}, server {digests[row_id]:#010x})")
        for row_id in have.keys() - want.keys():
            out.extra += 1
            _example(out, f"{table}/{row_id}: extra")
    return out


def _example(check: DeviceCheck, text: str) -> None:
    if len(check.examples) < 5:
        check.examples.append(text)


def summarize_checks(checks: list[DeviceCheck], skipped: dict[str, str]) -> dict[str, Any]:
    """The check's JSON: totals, pass/fail, and the first failing devices with examples."""
    failing = [c for c in checks if not c.ok]
    unfinished = sorted(d for d, why in skipped.items() if why.startswith("UNFINISHED"))
    return {
        "passed": not failing and not unfinished,
        "unfinished_devices": unfinished,
        "devices_checked": len(checks),
        "devices_skipped": skipped,  # device -> why (STORAGE_FULL: stopped; UNFINISHED: fails the check)
        "missing": sum(c.missing for c in checks),
        "extra": sum(c.extra for c in checks),
        "stale": sum(c.stale for c in checks),
        "altered": sum(c.altered for c in checks),
        "undelivered": sum(c.undelivered for c in checks),
        "failing_devices": [asdict(c) for c in failing[:20]],
    }
