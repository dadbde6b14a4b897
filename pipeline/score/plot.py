"""A summary as a figure: one panel per metric, a bar per region (and subset) with its bootstrap
interval, the chance baseline marked on each bar. Needs matplotlib (``pip install 'celebamask[plot]'``);
drawn on a plain ``Figure`` with the Agg canvas, so no display and no pyplot state is touched."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

SUBSET_COLOURS = {"": "#4c72b0", "present": "#dd8452", "absent": "#8c8c8c"}


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as missing:
        raise ModuleNotFoundError("--plot needs matplotlib: pip install 'celebamask[plot]'",
                                  name=missing.name) from None
    return Figure, FigureCanvasAgg


def plot_summary(summary: Any, path: str | Path | BinaryIO, *, dpi: int = 110) -> None:
    """Write ``summary`` (a :class:`celebamask.score.summary.Summary`) to ``path`` (or a binary file) as a PNG."""
    Figure, FigureCanvasAgg = _matplotlib()
    metrics = list(dict.fromkeys(r.metric for r in summary.rows))
    if not metrics:
        raise ValueError("nothing to plot: the summary has no rows")
    regions = list(dict.fromkeys(r.region for r in summary.rows))
    groups = list(dict.fromkeys(_group(r) for r in summary.rows))
    bars = len(regions) * len(groups)
    columns = 1 if bars > 24 else min(len(metrics), 2)
    panels = math.ceil(len(metrics) / columns)
    width = min(24.0, max(6.0, 0.14 * bars + 2))
    figure = Figure(figsize=(width * columns, 3.2 * panels), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        _panel(ax, [r for r in summary.rows if r.metric == metric], regions, groups, metric)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    figure.savefig(path if hasattr(path, "write") else os.fspath(path), format="png")


def _panel(ax: Any, rows: list[Any], regions: list[str], groups: list[tuple[str, str, str]], metric: str) -> None:
    """Bars grouped by region; whiskers = the interval; a black dash = the chance mean."""
    bar = 0.8 / len(groups)
    labelled: set[str] = set()
    for g, group in enumerate(groups):
        chosen = {r.region: r for r in rows if _group(r) == group}
        offset = (g - (len(groups) - 1) / 2) * bar
        x = np.array([i for i, name in enumerate(regions) if name in chosen], dtype=float) + offset
        picked = [chosen[name] for name in regions if name in chosen]
        if not picked:
            continue
        mean = np.array([r.mean for r in picked])
        low = np.array([r.ci_low for r in picked])
        high = np.array([r.ci_high for r in picked])
        error = np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)])
        label = _label(group)
        ax.bar(x, np.nan_to_num(mean), bar * 0.9, yerr=error, capsize=2, color=SUBSET_COLOURS[group[2]],
               alpha=0.5 + 0.5 * (g % 2 == 0), label=None if label in labelled else label, error_kw={"lw": 0.8})
        labelled.add(label)
        chance = np.array([r.chance for r in picked])
        ok = ~np.isnan(chance)
        ax.hlines(chance[ok], x[ok] - bar * 0.45, x[ok] + bar * 0.45, colors="black", linewidth=1.2,
                  label=None if "chance" in labelled or not ok.any() else "chance")
        if ok.any():
            labelled.add("chance")
    ax.set_title(metric)
    ax.set_xticks(range(len(regions)), regions, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(regions) - 0.4)
    ax.set_ylim(0, 1.05 if metric != "relevance_mass" else None)
    ax.grid(axis="y", alpha=0.3)
    if len(labelled) > 1:
        ax.legend(fontsize=7, loc="upper right")


def _group(row: Any) -> tuple[str, str, str]:
    """A bar's place in its region's group: a region scoring an attribute (named after it) puts its
    own present / absent bars in one shared place, so 40 attribute regions make 3 bars each, not 120."""
    return row.split, "its attribute" if row.attribute and row.attribute == row.region else row.attribute, row.present


def _label(group: tuple[str, str, str]) -> str:
    split, attribute, present = group
    parts = [] if split == "all" else [split]
    parts.append(f"{attribute} {present}" if attribute else "all samples")
    return ", ".join(parts)
