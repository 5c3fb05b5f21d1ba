"""The benchmark's outputs: bench.json, and one HTML page with each metric against fleet size (per
user class where the metric is per class), saturated sizes marked, and the baseline comparison."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

import orjson

from simulator.nightly.baseline import Finding
from simulator.nightly.run import Bench
from simulator.reports.charts import _empty, _figure, _styled, class_colors, to_svg
from simulator.reports.html import CSS

FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("First-sync time p95 (s)", "per class", ("first_sync_p95_s",)),
    ("First-sync time p50 (s)", "per class", ("first_sync_p50_s",)),
    ("Delta-sync time p95 (s)", "per class", ("delta_sync_p95_s",)),
    ("Conflict rate", "per class", ("conflict_rate",)),
    ("Failure rate", "per class", ("failure_rate",)),
    ("Server throughput", "run", ("server_requests_per_s", "server_rows_per_s")),
    ("429s answered", "run", ("throttled_429s",)),
    ("Generator loop lag p99 (ms)", "run", ("generator_loop_lag_p99_ms",)),
    ("Peak memory (MiB)", "run", ("devices_peak_rss_mb", "server_peak_rss_mb")),
)


def write_json(bench: Bench, path: Path, findings: Sequence[Finding] = ()) -> Path:
    data = {**bench.to_dict(), "comparison": [_finding(f) for f in findings]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path


def _finding(f: Finding) -> dict[str, object]:
    return {"devices": f.devices, "metric": f.metric, "verdict": f.verdict, "baseline": f.baseline,
            "current": f.current, "limit": f.limit, "why": f.why}


@_styled
def family_chart(bench: Bench, scope: str, metrics: tuple[str, ...], title: str) -> str:
    """One chart: the metric(s) against fleet size (log x), a line per class or per metric."""
    sizes = [s for s in bench.sizes if s.runs]
    if not sizes:
        return _empty("No runs")
    lines: dict[str, list[tuple[int, float]]] = {}
    for size in sizes:
        for name, value in size.median.items():
            base = name.rsplit(".", 1)[-1]
            if value is None or base not in metrics or (scope == "run") == ("." in name):
                continue
            label = name.rsplit(".", 1)[0] if scope == "per class" else name
            lines.setdefault(label, []).append((size.devices, float(value)))
    if not lines:
        return _empty(f"No {title.lower()} measured")
    fig, ax = _figure(height=3.2)
    colors = class_colors(sorted(lines))
    for label, points in sorted(lines.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colors[label], label=label)
    for size in sizes:
        if size.saturated:
            ax.axvspan(size.devices * 0.93, size.devices * 1.07, color="#fdd0a2", alpha=0.6, lw=0)
    ax.set_xscale("log")
    ax.set(xlabel="Devices (shaded: generator saturated, not comparable)", ylabel=title)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return to_svg(fig)


def write_html(bench: Bench, path: Path, findings: Sequence[Finding] = ()) -> Path:
    """bench.html: a table of sizes, the comparison (if any), and a chart per metric family."""
    rows = "".join(
        f"<tr><td>{s.devices:,}</td><td>{len(s.runs)}</td><td>{'yes' if s.saturated else 'no'}</td>"
        f"<td>{'passed' if s.checks_passed else 'FAILED'}</td><td>{', '.join(f'{w:.0f}' for w in s.wall_s)}</td></tr>"
        for s in bench.sizes)
    bad = [f for f in findings if f.verdict in ("regressed", "noisy", "not comparable")]
    comparison = "".join(f'<tr><td>{f.devices:,}</td><td>{escape(f.metric)}</td><td>{f.verdict}</td>'
                         f'<td class="text">{escape(f.why)}</td></tr>' for f in bad)
    compared = (f"<h2>Against the baseline</h2><p class='caption'>{len(findings)} figures compared; shown: "
                f"regressed, noisy and not comparable ({len(bad)}).</p><div class='table'><table><thead><tr>"
                f"<th>Devices</th><th>Metric</th><th>Verdict</th><th>Why</th></tr></thead><tbody>{comparison}"
                "</tbody></table></div>") if findings else ""
    charts = "".join(f"<section><h2>{escape(title)}</h2><figure>{family_chart(bench, scope, metrics, title)}"
                     "</figure></section>" for title, scope, metrics in FAMILIES)
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>syncsim bench: '
            f"{escape(bench.scenario)}</title><style>{CSS}</style></head><body><h1>syncsim bench: "
            f"{escape(bench.scenario)}</h1><p class='caption'>Seed {bench.seed}, {escape(bench.created)}, "
            f"{escape(str(bench.machine))}. Each size ran on a fresh server in its own process; figures are "
            "medians over the runs.</p><div class='table'><table><thead><tr><th>Devices</th><th>Runs</th>"
            "<th>Generator saturated</th><th>Checks</th><th>Wall s</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>{compared}{charts}</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
