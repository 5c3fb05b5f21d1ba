"""One self-contained HTML report: run details, a table per user class and inline SVG charts.

The page loads nothing at view time (no scripts, no CDN, no web fonts): styles are inline and the
charts are SVG elements drawn by `simulator.reports.charts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import orjson

from simulator.metrics import FirstSync
from simulator.reports import charts
from simulator.reports.console import HEADERS, class_row, fmt_causes, fmt_percent, totals_line
from simulator.reports.inputs import FirstSyncLike, RecordLike, as_first_syncs, as_records
from simulator.reports.summary import RESERVED_KEYS

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
figure { margin: 0; } svg { max-width: 100%; height: auto; }
"""

ChartMaker = Callable[[Mapping[str, Any], Sequence[Any], Sequence[FirstSync]], str]
CHARTS: tuple[tuple[str, str, ChartMaker], ...] = (
    ("First sync duration by user class",
     "Cumulative share of first syncs finished within a duration, from the first request of the first "
     "attempt to the end of the attempt that completed it (waits and pauses between attempts included); "
     "dotted lines mark p50 and p95. First syncs still unfinished at the end of the run are not drawn; "
     "the table counts them.",
     lambda s, r, f: charts.first_sync_cdf(f, list(s["classes"]))),
    ("First sync phases (median)",
     "Median seconds spent per first-sync phase over all attempts; the stack is the sum of phase medians, "
     "not the median total.",
     lambda s, r, f: charts.phase_bars(s)),
    ("Delta sync duration over scenario time",
     "Each point is one delta sync; crosses are failed syncs. A rising band means the server or network slows down.",
     lambda s, r, f: charts.delta_scatter([x for x in r if not x.final], list(s["classes"]))),
    ("Conflict and rejection rate",
     "Conflicts and rejections as a share of uploaded operations.",
     lambda s, r, f: charts.rate_bars(s)),
    ("Failures by cause",
     "Failed syncs per user class, by error code (the end-of-run final syncs are not counted).",
     lambda s, r, f: charts.failure_bars(s)),
)  # fmt: skip


def _value(value: Any, depth: int = 0) -> str:
    """A run detail: mappings as nested definition lists (two levels), anything deeper as JSON."""
    if isinstance(value, Mapping) and value and depth < 2:
        rows = "".join(f"<dt>{escape(str(k))}</dt><dd>{_value(v, depth + 1)}</dd>" for k, v in value.items())
        return f'<dl class="run nested">{rows}</dl>'
    if isinstance(value, Mapping | list | tuple):
        if not value:
            return "–"
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()
        return f"<code>{escape(text)}</code>"
    if isinstance(value, bool):
        return "<b>passed</b>" if value else "<b style='color:#c0392b'>FAILED</b>"
    return escape(str(value))


SHOWN_APART = ("ledger", "faults_injected")  # summary keys with a section of their own


def ledger_section(summary: Mapping[str, Any]) -> str:
    """The run's ledger as tables: faults injected by kind, every invariant (checked, violations,
    first examples), and the conflict recount. Empty when the summary has no ledger."""
    ledger = summary.get("ledger")
    if not ledger:
        return ""
    verdict = "passed" if ledger["passed"] else "FAILED"
    rows = "".join(
        f"<tr><td>{escape(name.replace('_', ' '))}</td><td>{r['checked']:,}</td><td>{r['violations']:,}</td>"
        f'<td class="text">{escape("; ".join(r["examples"]) or "–")}</td></tr>'
        for name, r in ledger["invariants"].items())
    c = ledger["conflicts"]
    faults = summary.get("faults_injected") or {}
    injected = "".join(f"<tr><td>{escape(k)}</td><td>{n:,}</td></tr>" for k, n in faults.items())
    fault_table = (f'<div class="table"><table><thead><tr><th>Fault injected</th><th>Times</th></tr></thead>'
                   f"<tbody>{injected}</tbody></table></div>") if faults else ""
    return (
        f"<h2>Ledger: {verdict}</h2>"
        '<p class="caption">The run checks its own numbers against an independent record (the server\'s '
        "write log, each device's edits and request times): conflicts and first-sync times are recomputed "
        f"from facts. Conflicts: {c['reported']:,} reported by devices, {c['ledger']:,} recomputed, of "
        f"{c['uploaded']:,} uploads. See docs/ledger.md.</p>{fault_table}"
        '<div class="table"><table><thead><tr><th>Invariant</th><th>Checked</th><th>Violations</th>'
        f"<th>First examples</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def run_details(summary: Mapping[str, Any]) -> str:
    """The `extra` entries of a summary (scenario, seed, checks...) and its mode counts as a list."""
    items = {k: v for k, v in summary.items() if k not in RESERVED_KEYS and k not in SHOWN_APART}
    items["syncs by mode"] = summary.get("mode_counts", {})
    rows = "".join(f"<dt>{escape(str(k))}</dt><dd>{_value(v)}</dd>" for k, v in items.items())
    return f'<dl class="run">{rows}</dl>'


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
                first_syncs: Sequence[FirstSyncLike] = ()) -> str:
    """The report page as a string (see `write_html`)."""
    recs, firsts = as_records(records), as_first_syncs(first_syncs)
    sections = [
        f'<section><h2>{escape(heading)}</h2><p class="caption">{escape(caption)}</p>'
        f"<figure>{make(summary, recs, firsts)}</figure></section>"
        for heading, caption, make in CHARTS
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{run_details(summary)}"
        f'<h2>Per user class</h2><p class="caption">{escape(totals_line(summary["totals"]))}. '
        "Durations are lived seconds of successful syncs: transfers at their real length plus every wait "
        "inside the sync (Retry-After, backoff, offline) at its full scenario length; first syncs span all "
        "their attempts. Rates are shares of uploaded operations.</p>"
        f"{class_table(summary)}{ledger_section(summary)}{''.join(sections)}</body></html>\n"
    )


def write_html(summary: Mapping[str, Any], records: Sequence[RecordLike], path: Path, title: str,
               first_syncs: Sequence[FirstSyncLike] = ()) -> Path:
    """Write one self-contained HTML report (inline CSS and SVG charts) to `path`; returns `path`.

    Charts: first-sync duration CDF per class, median first-sync phase time per class, delta-sync
    durations over scenario time, conflict/rejection rate per class, failures by cause.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary, records, title, first_syncs), encoding="utf-8")
    return path
