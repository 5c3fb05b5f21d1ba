"""One self-contained HTML report: run details, a table per user class and inline SVG charts.

The page loads nothing at view time (no scripts, no CDN, no web fonts): styles are inline and the
charts are SVG elements drawn by `simulator.reports.charts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from simulator.metrics import FirstSync, SyncRecord, TimelineSample
from simulator.reports import charts, run_charts
from simulator.reports.console import HEADERS, class_row, fmt_causes, fmt_percent, totals_line
from simulator.reports.inputs import FirstSyncLike, RecordLike, as_first_syncs, as_records

EXTRA_HEADERS = ("Rejections by cause", "Rows/device p50", "Storage used max (%)", "Restarts")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
p.caption { color: #555; margin: .3rem 0 .8rem; max-width: 60rem; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { padding: .3rem .45rem; border-bottom: 1px solid #e5e5e5; text-align: right; vertical-align: top; }
th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; font-weight: 600; }
td { white-space: nowrap; } td.text { text-align: left; white-space: normal; }
dl.run { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; font-size: .9rem; }
dl.run dt { font-weight: 600; } dl.run dd { margin: 0; }
code { font-size: .85rem; word-break: break-word; }
b.ok { color: #1e8449; } b.bad { color: #c0392b; } .warn { color: #b9770e; }
details { margin: .6rem 0 1rem; font-size: .85rem; } pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; }
figure { margin: 0; } svg { max-width: 100%; height: auto; }
"""

@dataclass(frozen=True, slots=True)
class RunData:
    """What the charts read: the summary and the recorded metrics."""

    summary: Mapping[str, Any]
    records: Sequence[SyncRecord]
    first_syncs: Sequence[FirstSync]
    timeline: Sequence[TimelineSample]


ChartMaker = Callable[[RunData], str]
CHARTS: tuple[tuple[str, str, ChartMaker], ...] = (
    ("First sync duration by user class",
     "Cumulative share of first syncs finished within a duration, from the first request of the first "
     "attempt to the end of the attempt that completed it (waits and pauses between attempts included); "
     "dotted lines mark p50 and p95. A first sync completed in the quiet period, after the scenario's end, is "
     "drawn whole (summary: completed_after_end); one that never completed is not drawn: the table counts it.",
     lambda d: charts.first_sync_cdf(d.first_syncs, list(d.summary["classes"]))),
    ("First sync phases (median)",
     "Median seconds spent per first-sync phase over all attempts; the stack is the sum of phase medians, "
     "not the median total. Hatched: the median device processing inside a phase (storing rows, writing "
     "files, reading metadata; first_sync_detail.processing_s in summary.json).",
     lambda d: charts.phase_bars(d.summary)),
    ("The run over time",
     "Every second (a long run in bins): devices online, syncing and offline; rows the server served per "
     "second and the 429s it answered; in a real-time run also the event-loop lag of the device process and "
     "of the server process, and the device process's CPU: above 100 ms of lag (or 90% CPU for long), sync "
     "times include the generator's own delay. Dotted lines mark rollout waves and privilege changes.",
     lambda d: run_charts.timeline(d.timeline, d.summary.get("timeline_marks", []))),
    ("Delta sync duration over scenario time",
     "Each point is one delta sync; crosses are failed syncs. A rising band means the server or network slows down.",
     lambda d: charts.delta_scatter([x for x in d.records if not x.final], list(d.summary["classes"]))),
    ("Delta sync duration per network",
     "Successful delta syncs per network preset (box: quartiles; whiskers: 1.5 IQR; dots: outliers).",
     lambda d: run_charts.delta_by_network(d.records)),
    ("Storage used against capacity",
     "Each device's storage used at its last sync (dots) against its capacity (bar), per user class and device size.",
     lambda d: run_charts.storage(d.records)),
    ("Conflict and rejection rate",
     "Conflicts and rejections as a share of uploaded operations.",
     lambda d: charts.rate_bars(d.summary)),
    ("Failures by cause",
     "Failed syncs per user class, by error code (the end-of-run final syncs are not counted).",
     lambda d: charts.failure_bars(d.summary)),
)  # fmt: skip


def ledger_section(summary: Mapping[str, Any]) -> str:
    """The run's ledger as tables: faults injected by kind, every invariant (checked, violations,
    first examples), and the conflict recount. Empty when the summary has no ledger."""
    ledger = summary.get("ledger")
    if not ledger:
        return ""
    if ledger.get("interrupted"):
        shown = ledger["invariants"].get("report_matches_ledger", {"checked": 0, "violations": 0})
        return (f"<h2>Ledger: not run (interrupted by {escape(str(ledger['interrupted']))})</h2>"
                '<p class="caption">The run was stopped early: devices stopped mid-sync, so the end-of-run check '
                "and the invariants against the server's write log did not run. The report was still compared "
                f"with the ledger's journal: {shown['violations']:,} violations of {shown['checked']:,} figures.</p>")
    verdict = "passed" if ledger["passed"] else "FAILED"
    rows = "".join(
        f"<tr><td>{escape(name.replace('_', ' '))}</td><td>{_checked(r['checked'])}</td><td>{r['violations']:,}</td>"
        f'<td class="text">{escape("; ".join(r["examples"]) or "–")}</td></tr>'
        for name, r in ledger["invariants"].items())
    c = ledger["conflicts"]
    faults = summary.get("faults_injected") or {}
    injected = "".join(f"<tr><td>{escape(k)}</td><td>{n:,}</td></tr>" for k, n in faults.items())
    fault_table = (f'<div class="table"><table><thead><tr><th>Fault injected</th><th>Times</th></tr></thead>'
                   f"<tbody>{injected}</tbody></table></div>") if faults else ""
    paths = ledger.get("paths") or {}
    reached = "".join(f"<tr><td>{escape(k)}</td><td>{n:,}</td></tr>" if n else
                      f'<tr><td>{escape(k)}</td><td class="warn">not reached</td></tr>' for k, n in paths.items())
    path_table = (f'<div class="table"><table><thead><tr><th>Path the invariants exist for</th><th>Times reached'
                  f"</th></tr></thead><tbody>{reached}</tbody></table></div>") if paths else ""
    return (
        f"<h2>Ledger: {verdict}</h2>"
        '<p class="caption">The run checks its own numbers against an independent record (the server\'s '
        "write log, each device's edits and request times): conflicts and first-sync times are recomputed "
        f"from facts. Conflicts: {c['reported']:,} reported by devices, {c['ledger']:,} recomputed, of "
        f"{c['uploaded']:,} uploads. See docs/ledger.md.</p>{fault_table}"
        '<div class="table"><table><thead><tr><th>Invariant</th><th>Checked</th><th>Violations</th>'
        f"<th>First examples</th></tr></thead><tbody>{rows}</tbody></table></div>{path_table}"
    )


def _checked(n: int) -> str:
    return f"{n:,}" if n else '<span class="warn">not exercised</span>'


def advisor_rows(summary: Mapping[str, Any], first_syncs: Sequence[FirstSync]) -> list[dict[str, Any]]:
    """Per class and network: the advisor's first-sync estimate beside the measured median of the
    first syncs that finished (and how far the model was off)."""
    advice = summary.get("advisor")
    if not advice:
        return []
    out = []
    for c in advice["classes"]:
        for network, phases in c["first_sync_s"].items():
            firsts = [f for f in first_syncs if f.finished and f.user_class == c["user_class"] and f.network == network]
            measured = [f.duration_s for f in firsts]
            p50 = float(np.median(measured)) if measured else None
            est = float(phases["total"])
            out.append({"user_class": c["user_class"], "network": network, "estimate_s": est, "measured_p50_s": p50,
                        "devices": len(measured),
                        "error": None if p50 is None or p50 <= 0 else (est - p50) / p50,
                        "left_out": _left_out(firsts)})
    return out


def _left_out(firsts: Sequence[FirstSync]) -> str:
    """What the measured first syncs spent that the estimate does not model: waits by kind (Retry-After,
    backoff, offline, between attempts; medians over the first syncs that had them), extra attempts
    and bytes fetched again after cuts."""
    parts = []
    for kind in sorted({k for f in firsts for k in f.waits_s}):
        spent = [f.waits_s[kind] for f in firsts if f.waits_s.get(kind, 0) > 0]
        if spent:
            parts.append(f"{kind.replace('_', ' ')} {float(np.median(spent)):,.1f} s ({len(spent)})")
    more = sum(1 for f in firsts if f.attempts > 1)
    if more:
        parts.append(f"{more} with more than one attempt")
    cut = sum(1 for f in firsts if f.refetched_bytes)
    if cut:
        parts.append(f"{cut} re-fetched after a cut")
    return "; ".join(parts)


def _advisor_row(r: Mapping[str, Any]) -> str:
    measured = "–" if r["measured_p50_s"] is None else f"{r['measured_p50_s']:,.1f}"
    off = "–" if r["error"] is None else f"{r['error']:+.0%}"
    return (f"<tr><td>{escape(r['user_class'])}</td><td>{escape(r['network'])}</td><td>{r['estimate_s']:,.1f}</td>"
            f"<td>{measured}</td><td>{r['devices']}</td><td>{off}</td>"
            f'<td class="text">{escape(r["left_out"] or "nothing")}</td></tr>')


def advisor_section(summary: Mapping[str, Any], first_syncs: Sequence[FirstSync]) -> str:
    """The profile advisor (`syncsim advise`): its estimates beside what the run measured, and its advice."""
    advice = summary.get("advisor")
    if not advice:
        return ""
    rows = "".join(_advisor_row(r) for r in advisor_rows(summary, first_syncs))
    items = "".join(f"<li>{escape(a['level'])}: {escape(a['user_class'])}"
                    f"{' / ' + escape(a['table']) if a['table'] else ''}: {escape(a['message'])}. {escape(a['fix'])}</li>"
                    for a in advice["advice"]) or "<li>No advice: every profile is within the guidance.</li>"
    return (
        "<h2>Profile advisor</h2>"
        '<p class="caption">The advisor\'s first-sync estimate (<code>syncsim advise</code>: requests &times; round '
        "trip + bytes / bandwidth, plus the device processing of the class's device kinds) beside the median "
        "measured first sync of the devices "
        "of that class on that network, so the model's error shows. The estimate is of a first sync without "
        "faults: the last column says what the measured ones also spent (waits for Retry-After, backoff after "
        "errors, offline time, pauses between attempts: medians in seconds, with how many first syncs had them), "
        "so an estimate far below the measurement there is not the model's error. Its advice follows.</p>"
        '<div class="table"><table><thead><tr><th>User class</th><th>Network</th><th>Estimate (s)</th>'
        f"<th>Measured p50 (s)</th><th>Devices</th><th>Estimate off by</th><th>The measured first syncs also had"
        f"</th></tr></thead><tbody>{rows}</tbody>"
        f"</table></div><ul>{items}</ul>"
    )


def _verdict(ok: bool, good: str, bad: str) -> str:
    return f'<b class="ok">{escape(good)}</b>' if ok else f'<b class="bad">{escape(bad)}</b>'


def _verdicts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The three questions a reader asks first: did devices converge, do the numbers add up, can the
    durations be trusted (was the generator itself the bottleneck)."""
    rows: list[tuple[str, str]] = []
    if summary.get("interrupted"):
        rows.append(("Interrupted", '<b class="bad">' + escape(
            f"stopped by {summary['interrupted']} after {summary.get('run_s', 0):,.0f} s: the figures are what "
            "happened so far") + "</b>"))
    check = summary.get("end_of_run_check")
    if check:
        rows.append(("Devices converged", _verdict(check["passed"], "passed", "FAILED") + escape(
            f" — {check['devices_checked']} checked; missing {check['missing']}, extra {check['extra']}, stale "
            f"{check['stale']}, undelivered {check['undelivered']}; {len(check['devices_skipped'])} left out")))
    ledger = summary.get("ledger")
    if ledger:
        broken = sum(r["violations"] for r in ledger["invariants"].values())
        rows.append(("Ledger", _verdict(ledger["passed"], "passed", "FAILED") + escape(
            f" — {len(ledger['invariants'])} invariants, {broken} violations (see below)")))
    health = summary.get("generator")
    if health and health.get("samples"):
        d = health["devices_process"]
        rows.append(("Generator", _verdict(not health["saturated"], "not saturated", "SATURATED") + escape(
            f" — device process loop lag p99 {d['loop_lag_ms_p99']:.0f} ms, CPU max {d['cpu_max'] * 100:.0f}%, "
            f"saturated {health['saturated_share'] * 100:.0f}% of the time"
            + ("; sync durations include the generator's own delay" if health["saturated"] else ""))))
    for w in summary.get("world_ahead") or []:
        rows.append((f"World ahead: {w['user_class']}", '<b class="bad">WARNING</b>' + escape(
            f" — its syncs' transfers and work take up to {w['share'] * 100:.0f}% of the real time between its "
            f"syncs ({w['work_p95_s']:.1f} s of {w['between_syncs_real_s']:.1f} s, p95): meanwhile the rest of the "
            "world ran time_scale times faster than its devices; the virtual clock has one time for all")))
    return rows


def _clock_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Which clock ran; in virtual time what the server model assumed and spent."""
    model = summary.get("server_model")
    if summary.get("clock") != "virtual" or not model:
        return [("Clock", escape("real time: real sockets and waits"))] if summary.get("clock") == "real" else []
    spent = model.get("spent") or {}
    costs = "; ".join(f"{kind} {c['base_ms']:g} ms + {c['per_row_ms']:g} ms/row + {c['per_kb_ms']:g} ms/KiB"
                      for kind, c in model.items() if isinstance(c, dict) and "base_ms" in c)
    return [("Clock", escape(
        f"virtual time: one simulated time for devices, network and server (deterministic for a seed). Server "
        f"model: {model['concurrency']} request(s) at once; {costs}. It served {spent.get('requests', 0):,} "
        f"requests in {spent.get('busy_s', 0):,.1f} s, which waited {spent.get('queued_s', 0):,.1f} s in all for a place"))]


def _run_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if "scenario" in summary:
        scale = summary.get("time_scale")
        when = (f"at x{scale:g} ({summary.get('duration_s', 0) / scale:,.0f} s real)" if scale
                else "in virtual time")
        rows.append(("Scenario", escape(
            f"{summary['scenario']} (seed {summary.get('seed')}): {summary.get('duration_s', 0):,.0f} s of scenario "
            f"time {when}")))
    rows += _clock_facts(summary)
    totals = summary.get("totals", {})
    rows.append(("Syncs", escape(", ".join(f"{n:,} {mode}" for mode, n in summary.get("mode_counts", {}).items())
                                 + f" by {totals.get('devices', 0):,} devices") or "–"))
    server = summary.get("server")
    if server:
        rows.append(("Server", escape(
            f"{server.get('rows_served', 0):,} rows and {server.get('bytes_served', 0) / 1e6:,.1f} MB served, "
            f"{server.get('writes_applied', 0):,} writes applied, "
            f"{sum(server.get('throttles', {}).values()):,} 429s answered")))
    by_table = summary.get("conflicts_by_table") or {}
    if by_table:
        rows.append(("Conflicts by table", escape("; ".join(
            f"{t}: {v['conflicts']} ({v['policy']})" for t, v in by_table.items()))))
    return rows


def run_details(summary: Mapping[str, Any]) -> str:
    """The run at a glance (verdicts, scenario, syncs, server), then every summary field in a
    collapsed block for those who want the raw figures."""
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in [*_verdicts(summary), *_run_facts(summary)])
    raw = {k: v for k, v in summary.items() if k not in ("classes",)}
    text = orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()
    return (f'<dl class="run">{rows}</dl><details><summary>All run fields (summary.json without the per-class '
            f"figures)</summary><pre>{escape(text)}</pre></details>")


def _extra_cells(c: Mapping[str, Any]) -> list[str]:
    rows = c["rows_per_device"]["p50"]
    return [
        fmt_causes(c.get("rejections_by_cause", {})),
        "–" if rows is None else f"{rows:,.0f}",
        fmt_percent(c["storage"]["used_share_max"]),
        str(c["restarts"]),
    ]


def class_table(summary: Mapping[str, Any]) -> str:
    """The per-user-class table: the console columns plus rows, storage and restarts."""
    head = "".join(f"<th>{escape(h)}</th>" for h in (*HEADERS, *EXTRA_HEADERS))
    body = []
    for name, c in summary["classes"].items():
        cells = [*class_row(name, c), *_extra_cells(c)]
        tds = "".join(
            f'<td class="text">{escape(v)}</td>'
            if i in (HEADERS.index("Failures by cause"), len(HEADERS))
            else f"<td>{escape(v)}</td>"
            for i, v in enumerate(cells)
        )
        body.append(f"<tr>{tds}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(HEADERS) + len(EXTRA_HEADERS)}">No syncs recorded</td></tr>')
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def render_html(summary: Mapping[str, Any], records: Sequence[RecordLike], title: str,
                first_syncs: Sequence[FirstSyncLike] = (), timeline: Sequence[TimelineSample] = ()) -> str:
    """The report page as a string (see `write_html`)."""
    data = RunData(summary, as_records(records), as_first_syncs(first_syncs), list(timeline))
    sections = [
        f'<section><h2>{escape(heading)}</h2><p class="caption">{escape(caption)}</p>'
        f"<figure>{make(data)}</figure></section>"
        for heading, caption, make in CHARTS
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{run_details(summary)}"
        f'<h2>Per user class</h2><p class="caption">{escape(totals_line(summary["totals"]))}. '
        "Durations are lived seconds of successful syncs: transfers and the device's own processing at their "
        "real length plus every wait inside the sync (Retry-After, backoff, offline) at its full scenario "
        "length; first syncs span all "
        "their attempts. Rates are shares of uploaded operations.</p>"
        f"{class_table(summary)}{ledger_section(summary)}{advisor_section(summary, data.first_syncs)}"
        f"{''.join(sections)}</body></html>\n"
    )


def write_html(summary: Mapping[str, Any], records: Sequence[RecordLike], path: Path, title: str,
               first_syncs: Sequence[FirstSyncLike] = (), timeline: Sequence[TimelineSample] = ()) -> Path:
    """Write one self-contained HTML report (inline CSS and SVG charts) to `path`; returns `path`.

    Charts: first-sync duration CDF per class, median first-sync phase time per class, delta-sync
    durations over scenario time, conflict/rejection rate per class, failures by cause.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary, records, title, first_syncs, timeline), encoding="utf-8")
    return path
