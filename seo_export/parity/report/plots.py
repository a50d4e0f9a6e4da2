"""Report figures as PNG bytes: plain data in, bytes out, no pyplot state.

Figures are drawn on the Agg canvas directly (not through pyplot), so rendering works without a
display and does not disturb a caller's own matplotlib backend.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from seo_export.parity.metrics import HIST_EDGES

HEATMAP_MAX_SIZE = 256  # larger maps are mean-pooled: an 8k x 8k PNG would bloat the HTML for no detail
LEGEND_ROWS = 14  # legend entries per column: more start another column rather than overflow the figure


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def png_bytes(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _legend_beside(fig: Figure, ax) -> None:
    """The legend right of the axes, where it never covers data; the figure widens by the legend's width
    so the axes keep theirs. Lays the figure out."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7,
                           ncols=math.ceil(len(handles) / LEGEND_ROWS))
        width = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
        fig.set_figwidth(fig.get_figwidth() + width + 0.2)
    fig.tight_layout()


def plottable_series(series: dict[str, Sequence[tuple[float, float | None]]],
                     min_points: int = 2) -> dict[str, list[tuple[float, float]]]:
    """The series with at least ``min_points`` distinct x (None y dropped): a line through one point
    shows no trend, so such series are left out of line charts."""
    kept = {}
    for name, points in series.items():
        points = sorted((x, y) for x, y in points if y is not None)
        if len({x for x, _ in points}) >= min_points:
            kept[name] = points
    return kept


def _decade_label(exponent: float) -> str:
    return f"1e{int(round(exponent))}"


def error_histogram_png(counts_by_series: dict[str, Sequence[int]], *, title: str = "Absolute error",
                        edges: Sequence[float] = HIST_EDGES) -> bytes:
    """Grouped bars of the share of elements per error decade, one colour per series (backend)."""
    labels = [f"<{_decade_label(math.log10(edges[0]))}"]
    labels += [f"{_decade_label(math.log10(lo))}..{_decade_label(math.log10(hi))}" for lo, hi in zip(edges, edges[1:])]
    labels.append(f">={_decade_label(math.log10(edges[-1]))}")
    fig, ax = _figure(width=8)
    x = np.arange(len(labels))
    width = 0.8 / max(len(counts_by_series), 1)
    for i, (name, counts) in enumerate(counts_by_series.items()):
        counts = np.asarray(counts, dtype=float)
        if counts.shape != (len(labels),):
            raise ValueError(f"{name}: expected {len(labels)} histogram counts, got {counts.shape}")
        share = counts / counts.sum() if counts.sum() else counts  # shares keep backends comparable
        ax.bar(x + (i - (len(counts_by_series) - 1) / 2) * width, share, width, label=name)
    ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("share of elements")
    ax.set_title(title)
    _legend_beside(fig, ax)
    return png_bytes(fig)


def line_chart_png(series: dict[str, Sequence[tuple[float, float]]], **kwargs) -> bytes:
    return png_bytes(line_chart(series, **kwargs))


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, title: str, xlabel: str, ylabel: str,
               logx: bool = False, logy: bool = False) -> Figure:
    """One line per series through its (x, y) points, sorted by x; non-positive y is dropped on a log axis.
    Series with fewer than two distinct x are left out; ValueError when none is left."""
    series = plottable_series({name: [(x, y) for x, y in points if y is not None and (not logy or y > 0)]
                               for name, points in series.items()})
    if not series:
        raise ValueError("no series has two distinct x values to draw a line through")
    fig, ax = _figure()
    for name, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    if logx:
        # Sequence lengths are mostly powers of two: base-2 ticks written as plain numbers read best.
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _legend_beside(fig, ax)
    return fig


def bar_chart_png(labels: Sequence[str], series: dict[str, Sequence[float | None]], *, title: str, ylabel: str,
                  reference: float | None = None,
                  intervals: dict[str, Sequence[tuple[float, float] | None]] | None = None) -> bytes:
    """Grouped bars: one group per label, one bar per series; None leaves a gap. ``reference``
    draws a horizontal line (speedup 1.0); ``intervals`` (same layout as ``series``) draws
    each bar's (low, high) as a whisker."""
    fig, ax = _figure(width=min(16.0, max(6.4, 0.6 * len(labels) * max(len(series), 1))))
    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        if len(values) != len(labels):
            raise ValueError(f"{name}: {len(values)} values for {len(labels)} labels")
        heights = [np.nan if v is None else v for v in values]
        positions = x + (i - (len(series) - 1) / 2) * width
        ax.bar(positions, heights, width, label=name)
        for position, height, interval in zip(positions, values, (intervals or {}).get(name, ())):
            if height is not None and interval is not None:
                low, high = interval
                ax.errorbar(position, height, yerr=[[height - low], [high - height]], fmt="none", ecolor="black",
                            capsize=3, linewidth=0.8)
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_beside(fig, ax)
    return png_bytes(fig)


def _downsample(matrix: np.ndarray, max_size: int) -> np.ndarray:
    """Mean-pool blocks of factor x factor (NaN-padded at the edges) so no side exceeds max_size."""
    factor = math.ceil(max(matrix.shape) / max_size)
    if factor <= 1:
        return matrix
    rows, cols = (math.ceil(n / factor) * factor for n in matrix.shape)
    padded = np.full((rows, cols), np.nan)
    padded[:matrix.shape[0], :matrix.shape[1]] = matrix
    return np.nanmean(padded.reshape(rows // factor, factor, cols // factor, factor), axis=(1, 3))


def heatmap_png(matrix: np.ndarray, *, title: str, max_size: int = HEATMAP_MAX_SIZE) -> bytes:
    """An attention pattern [query, key] as a heatmap."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"an attention map must be 2-D [query, key], got shape {matrix.shape}")
    fig, ax = _figure(width=4.6, height=4.0)
    image = ax.imshow(_downsample(matrix, max_size), cmap="viridis", interpolation="nearest", aspect="auto",
                      extent=(0, matrix.shape[1], matrix.shape[0], 0))
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)
