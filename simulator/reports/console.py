"""Print a summary (from `summarize`) as one rich table with a row per user class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

MB = 1_000_000  # bytes in a megabyte (decimal, as network and storage sizes are quoted)
DASH = "–"


def fmt_seconds(value: float | None) -> str:
    """Seconds with 2 decimals, or a dash when there is no value."""
    return DASH if value is None else f"{value:.2f}"


def fmt_percent(rate: float | None) -> str:
    """A 0..1 rate as a percentage with 2 decimals."""
    return DASH if rate is None else f"{rate * 100:.2f}"


def fmt_mb(value: float | None) -> str:
    """Bytes as megabytes with 2 decimals."""
    return DASH if value is None else f"{value / MB:.2f}"


def fmt_causes(causes: Mapping[str, int]) -> str:
    """Counts by cause as "STORAGE_FULL:2 NETWORK:1", or a dash when there are none."""
    return " ".join(f"{cause}:{count}" for cause, count in causes.items()) or DASH


def class_row(name: str, c: Mapping[str, Any]) -> list[str]:
    """The cells of one user class: the columns of `HEADERS`."""
    first = c["first_sync"]
    return [
        name,
        str(c["devices"]),
        f"{c['syncs']} / {c['failed']}",
        fmt_seconds(first["p50"]),
        fmt_seconds(first["p95"]),
        fmt_seconds(first["p99"]),
        str(c["first_sync_detail"]["unfinished"]["count"]),
        fmt_seconds(c["delta_sync"]["p95"]),
        fmt_percent(c["conflict_rate"]),
        fmt_percent(c["rejection_rate"]),
        fmt_causes(c["failures_by_cause"]),
        fmt_mb(c["bytes_per_device"]["p50"]),
    ]


HEADERS = (
    "User class",
    "Devices",
    "Syncs / failed",
    "First sync p50 (s)",
    "p95 (s)",
    "p99 (s)",
    "Unfinished",
    "Delta p95 (s)",
    "Conflicts (%)",
    "Rejections (%)",
    "Failures by cause",
    "MB/device p50",
)


def totals_line(totals: Mapping[str, int]) -> str:
    """One line of run totals: devices, syncs, failures, uploads, conflicts, rows, MB."""
    return (
        f"Totals: {totals['devices']} devices, {totals['syncs']} syncs ({totals['failed']} failed), "
        f"{totals['uploaded']} uploaded ops, {totals['conflicts']} conflicts, "
        f"{totals['rejections']} rejections, {totals['rows']:,} rows, {fmt_mb(totals['bytes'])} MB"
    )


def render_table(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the per-user-class table of `summary` and a totals line to `console` (default stdout)."""
    console = console or Console()
    table = Table(title="Sync summary per user class", title_justify="left")
    for i, header in enumerate(HEADERS):
        causes = i == HEADERS.index("Failures by cause")  # every cell folds, never cut short: "STORAGE_…"
        table.add_column(header, justify="left" if i == 0 or causes else "right", no_wrap=i == 0, overflow="fold")
    for name, c in summary["classes"].items():
        table.add_row(*class_row(name, c))
    console.print(table)
    console.print(totals_line(summary["totals"]))
    running = sum(c["first_sync_detail"]["unfinished"]["by_cause"].get("STILL_RUNNING", 0)
                  for c in summary["classes"].values())
    if running:
        console.print(f"[yellow]{running} first syncs never completed[/], not even in the quiet period's final "
                      "syncs: they are reported as unfinished and left out of the first-sync percentiles. Give "
                      "them more time: a longer duration_s or quiet_period_s.")
    late = sum(c["first_sync_detail"].get("completed_after_end", 0) for c in summary["classes"].values())
    if late:
        console.print(f"{late} first syncs completed after the scenario's end, in the quiet period: each is "
                      "counted whole (first request to completion, every attempt's rows) in the first-sync figures.")


def render_ledger(ledger: Mapping[str, Any], faults: Mapping[str, int], console: Console | None = None) -> None:
    """Print the faults injected (if any), the ledger's invariants (checked, violations, first
    examples; "not exercised" when nothing was checked), the paths reached and the conflict recount."""
    console = console or Console()
    if ledger.get("interrupted"):
        return  # the run says so itself: no invariant was checked
    if faults:
        injected = Table(title="Faults injected", title_justify="left")
        injected.add_column("Fault")
        injected.add_column("Times", justify="right")
        for kind, n in faults.items():
            injected.add_row(kind, f"{n:,}")
        console.print(injected)
    verdict = "[green]passed[/]" if ledger["passed"] else "[red]FAILED[/]"
    table = Table(title=f"Ledger: every run checks its own numbers ({verdict})", title_justify="left")
    for header in ("Invariant", "Checked", "Violations", "First examples"):
        table.add_column(header, justify="left" if header in ("Invariant", "First examples") else "right")
    for name, result in ledger["invariants"].items():
        examples = "; ".join(result["examples"][:2]) or DASH
        style = "red" if result["violations"] else None
        checked = f"{result['checked']:,}" if result["checked"] else "[yellow]not exercised[/]"
        table.add_row(name.replace("_", " "), checked, str(result["violations"]), examples, style=style)
    console.print(table)
    paths = ledger.get("paths")
    if paths:
        reached = Table(title="Paths the invariants exist for, as this run reached them", title_justify="left")
        reached.add_column("Path")
        reached.add_column("Times", justify="right")
        for path, n in paths.items():
            reached.add_row(path, f"{n:,}" if n else "[yellow]not reached[/]")
        console.print(reached)
    c = ledger["conflicts"]
    console.print(f"Conflicts: {c['reported']} reported by devices, {c['ledger']} recomputed from the ledger, "
                  f"of {c['uploaded']} uploads ({fmt_percent(c['reported_rate'])}% / {fmt_percent(c['ledger_rate'])}%)")


def render_generator(health: Mapping[str, Any], console: Console | None = None) -> None:
    """One line on the generator's health, and a warning naming the figures when it was saturated."""
    console = console or Console()
    if not health.get("samples"):
        return
    d, srv = health["devices_process"], health["server_process"]
    server = "" if srv["cpu_p50"] is None else (
        f"; server process: loop lag p99 {srv['loop_lag_ms_p99']:.0f} ms, CPU p50 {srv['cpu_p50'] * 100:.0f}%"
        f" (max {srv['cpu_max'] * 100:.0f}%), peak {srv['peak_rss_mb']:,.0f} MiB")
    console.print(f"Generator: device process loop lag p50 {d['loop_lag_ms_p50']:.0f} ms / p99 "
                  f"{d['loop_lag_ms_p99']:.0f} ms, CPU p50 {d['cpu_p50'] * 100:.0f}% (max {d['cpu_max'] * 100:.0f}%), "
                  f"peak {d['peak_rss_mb']:,.0f} MiB{server}")
    if health["saturated"]:
        console.print(f"[bold yellow]Warning: the generator was saturated[/] (loop lag p99 {d['loop_lag_ms_p99']:.0f} ms, "
                      f"CPU above 90% for {d['cpu_over_90pct_share'] * 100:.0f}% of the run; saturated "
                      f"{health['saturated_share'] * 100:.0f}% of the time): sync durations include the "
                      "generator's own delay. Run fewer devices per process, or a lower time_scale.")
