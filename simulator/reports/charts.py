"""Charts of a run as inline SVG strings (matplotlib, no pyplot state, text kept as SVG text).

Each function returns one `<svg ...>...</svg>` element; with no data it returns a small SVG saying
so. Durations are plotted in seconds, scenario time in minutes since the run's first sync started.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from simulator.metrics import FirstSync, SyncRecord
from simulator.reports.summary import FIRST_SYNC_PHASES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from matplotlib.typing import RcKeyType

MAX_POINTS = 4000  # scatter points drawn at most (evenly thinned beyond that)
CDF_STEPS = 400  # points per class on a CDF line (quantiles beyond that)
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
PHASE_COLORS = {"metadata": "#9ecae1", "data": "#3182bd", "files": "#08519c"}
RATE_COLORS = {"Conflicts": "#fd8d3c", "Rejections": "#d62728"}
CAUSE_COLORS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f", "#e377c2", "#bcbd22", "#17becf")
STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: small files, selectable labels, no embedded fonts
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "axes.axisbelow": True,
}
_ids = itertools.count()


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """A stable colour per user class, in the order given."""
    return {name: CLASS_COLORS[i % len(CLASS_COLORS)] for i, name in enumerate(classes)}


def _figure(height: float = 3.8) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, height), layout="constrained")
    return fig, fig.add_subplot()


def _label_totals(ax: Any, totals: np.ndarray, fmt: str) -> None:
    """Write each stacked bar's total above it."""
    for i, total in enumerate(totals):
        ax.annotate(fmt.format(total), (i, total), ha="center", va="bottom", xytext=(0, 2),
                    textcoords="offset points", fontsize=9)


def to_svg(fig: Figure) -> str:
    """The figure as an `<svg>` element (no XML prolog), with ids unique within the page."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"syncsim-{next(_ids)}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _styled(draw: Any) -> Any:
    """Run a chart function under `STYLE` so ticks, fonts and grids match across charts."""

    def wrapper(*args: Any, **kwargs: Any) -> str:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = draw.__doc__, draw.__name__
    return wrapper


def _empty(message: str) -> str:
    fig, ax = _figure(height=1.2)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#666666", transform=ax.transAxes)
    return to_svg(fig)


def _stack_legend(ax: Axes, title: str) -> None:
    """A legend right of the plot, listed top to bottom in the order the stack is drawn."""
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1], labels[::-1], title=title, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False
    )


def _thin(count: int, limit: int) -> np.ndarray:
    """At most `limit` evenly spaced indices below `count` (all of them when fewer)."""
    return np.arange(count) if count <= limit else np.linspace(0, count - 1, limit).astype(int)


@_styled
def first_sync_cdf(first_syncs: Sequence[FirstSync], classes: Sequence[str]) -> str:
    """Cumulative distribution of finished first-sync durations (lived s), one line per user class."""
    by_class: dict[str, list[float]] = {name: [] for name in classes}
    for f in first_syncs:
        if f.finished:
            by_class.setdefault(f.user_class, []).append(f.duration_s)
    if not any(by_class.values()):
        return _empty("No successful first syncs recorded")
    fig, ax = _figure()
    colors = class_colors(list(by_class))
    for name, values in by_class.items():
        if not values:
            continue
        x = np.sort(np.asarray(values))
        share = np.arange(1, x.size + 1) / x.size
        if x.size > CDF_STEPS:
            share = np.linspace(1 / x.size, 1.0, CDF_STEPS)
            x = np.quantile(x, share, method="inverted_cdf")
        ax.step(
            np.r_[x[0], x],
            np.r_[0.0, share],
            where="post",
            color=colors[name],
            lw=1.8,
            label=f"{name} (n={len(values)})",
        )
    for level in (0.5, 0.95):
        ax.axhline(level, color="#999999", lw=0.8, ls=":")
        ax.text(
            1.0,
            level,
            f" p{int(level * 100)}",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=9,
            color="#555555",
        )
    ax.set(xlabel="First sync duration (s)", ylabel="Share of first syncs", ylim=(0, 1.02))
    ax.set_xlim(left=0)
    ax.legend(loc="lower right", frameon=False)
    return to_svg(fig)


@_styled
def phase_bars(summary: Mapping[str, Any]) -> str:
    """Stacked bars of median FIRST_SYNC phase time (s) per user class: metadata, data, files; the
    median device processing inside each phase is hatched at the foot of its segment."""
    classes = [n for n, c in summary["classes"].items() if c["first_sync"]["count"]]
    if not classes:
        return _empty("No successful first syncs recorded")
    fig, ax = _figure()
    bottom = np.zeros(len(classes))
    hatched = False
    for phase in FIRST_SYNC_PHASES:
        p50 = np.array([summary["classes"][n]["first_sync_phases"][phase]["p50"] or 0.0 for n in classes])
        ax.bar(classes, p50, bottom=bottom, label=phase, color=PHASE_COLORS[phase], width=0.6)
        work = np.array([(summary["classes"][n].get("first_sync_detail", {}).get("processing_s", {}).get(phase) or {})
                         .get("p50") or 0.0 for n in classes])
        if work.any():
            ax.bar(classes, np.minimum(work, p50), bottom=bottom, width=0.6, fill=False, hatch="//",
                   edgecolor="#ffffff", linewidth=0, label=None if hatched else "device processing")
            hatched = True
        bottom += p50
    _label_totals(ax, bottom, "{:.1f} s")
    ax.set(ylabel="Median phase time (s)")
    ax.set_ylim(top=max(bottom.max() * 1.12, 1e-9))
    ax.grid(axis="x", visible=False)
    _stack_legend(ax, "Phase")
    return to_svg(fig)


@_styled
def delta_scatter(records: Sequence[SyncRecord], classes: Sequence[str]) -> str:
    """DELTA_SYNC durations (s) over scenario time (min since the first sync started), per class.

    Successful syncs are dots, failed ones crosses; beyond `MAX_POINTS` points are evenly thinned.
    """
    deltas = [r for r in records if r.mode == "DELTA_SYNC"]
    if not deltas:
        return _empty("No delta syncs recorded")
    origin = min(r.start for r in records)
    keep = _thin(len(deltas), MAX_POINTS)
    shown = [deltas[i] for i in keep]
    fig, ax = _figure()
    colors = class_colors(list(dict.fromkeys([*classes, *(r.user_class for r in shown)])))
    for name, color in colors.items():
        for result, marker in (("success", "o"), ("failed", "x")):
            points = [r for r in shown if r.user_class == name and r.result == result]
            if not points:
                continue
            x = [(r.start - origin) / 60 for r in points]
            label = name if result == "success" else f"{name} (failed)"
            ax.scatter(
                x,
                [r.duration_s for r in points],
                s=14 if marker == "o" else 22,
                marker=marker,
                color=color,
                alpha=0.65,
                linewidths=0 if marker == "o" else 1.2,
                label=label,
            )
    thinned = f" ({len(shown)} of {len(deltas)} shown)" if len(shown) < len(deltas) else ""
    ax.set(xlabel=f"Scenario time (min since first sync start){thinned}", ylabel="Delta sync duration (s)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, markerscale=1.5)
    return to_svg(fig)


@_styled
def rate_bars(summary: Mapping[str, Any]) -> str:
    """Conflict and rejection rates (% of uploaded operations) per user class, side by side."""
    classes = list(summary["classes"])
    if not any(c["uploaded"] for c in summary["classes"].values()):
        return _empty("No uploads recorded")
    fig, ax = _figure()
    x = np.arange(len(classes))
    width = 0.38
    for offset, (label, key) in zip(
        (-width / 2, width / 2),
        (("Conflicts", "conflict_rate"), ("Rejections", "rejection_rate")),
        strict=True,
    ):
        values = np.array([summary["classes"][n][key] * 100 for n in classes])
        bars = ax.bar(x + offset, values, width, label=label, color=RATE_COLORS[label])
        ax.bar_label(bars, labels=[f"{v:.1f}%" for v in values], fontsize=8, padding=2)
    uploaded = [summary["classes"][n]["uploaded"] for n in classes]
    ax.set_xticks(x, [f"{n}\n({u} ops)" for n, u in zip(classes, uploaded, strict=True)])
    ax.set(ylabel="% of uploaded operations")
    ax.margins(y=0.15)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return to_svg(fig)


@_styled
def failure_bars(summary: Mapping[str, Any]) -> str:
    """Failed syncs per user class, stacked by cause (error code)."""
    classes = list(summary["classes"])
    totals: Counter[str] = Counter()
    for c in summary["classes"].values():
        totals.update(c["failures_by_cause"])
    causes = [cause for cause, _ in totals.most_common()]  # the most frequent cause at the bottom
    if not causes:
        return _empty("No failed syncs recorded")
    fig, ax = _figure()
    bottom = np.zeros(len(classes))
    for i, cause in enumerate(causes):
        counts = np.array([summary["classes"][n]["failures_by_cause"].get(cause, 0) for n in classes])
        ax.bar(
            classes, counts, bottom=bottom, label=cause, color=CAUSE_COLORS[i % len(CAUSE_COLORS)], width=0.6
        )
        bottom += counts
    _label_totals(ax, bottom, "{:.0f}")
    ax.set(ylabel="Failed syncs")
    cast("MaxNLocator", ax.yaxis.get_major_locator()).set_params(integer=True)  # default: AutoLocator
    ax.set_ylim(top=bottom.max() * 1.12)
    ax.grid(axis="x", visible=False)
    _stack_legend(ax, "Cause")
    return to_svg(fig)
