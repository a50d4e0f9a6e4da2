"""report.html: one self-contained page (inline CSS, PNGs as data URIs, no external URL) of a report."""

from __future__ import annotations

import base64
import html
import os
import statistics
from typing import Callable

import numpy as np

from seo_export.parity.metrics import HIST_EDGES
from seo_export.parity.report import plots
from seo_export.parity.report.json_report import write_text
from seo_export.parity.report.markdown import (
    MISSING,
    failure_lines,
    fmt,
    summary_note,
    summary_rows,
    worst_abs_error,
)
from seo_export.parity.report.schema import check_report, headline_speedup, variant_label

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
.PASS { color: #176b2c; font-weight: bold; } .FAIL { color: #b00020; font-weight: bold; }
.meta { color: #666; } figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; }
li { margin: 0.3em 0; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _median_by(results: list[dict], key: Callable[[dict], tuple[str, str]],
               value: Callable[[dict], float | None]) -> dict[tuple[str, str], float]:
    """Median of ``value`` over results sharing ``key`` (label, series); None values are skipped."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in results:
        v = value(r)
        if v is not None:
            groups.setdefault(key(r), []).append(v)
    return {k: statistics.median(vs) for k, vs in groups.items()}


def _bars(medians: dict[tuple[str, str], float], intervals: dict[tuple[str, str], tuple] | None = None,
          **kwargs) -> bytes | None:
    """Grouped bar chart from {(label, series): value}, with optional {(label, series): (low, high)}
    whiskers; None when there is nothing to draw."""
    if not medians:
        return None
    labels = list(dict.fromkeys(label for label, _ in medians))
    names = list(dict.fromkeys(name for _, name in medians))
    series = {n: [medians.get((label, n)) for label in labels] for n in names}
    if intervals:
        kwargs["intervals"] = {n: [intervals.get((label, n)) for label in labels] for n in names}
    return plots.bar_chart_png(labels, series, **kwargs)


def _against_seq(points: dict[str, list], **kwargs) -> bytes | str | None:
    """A log-log line chart against sequence length; None without data, and the reason instead of a chart
    when no series has two lengths (one point per line would show no scaling at all)."""
    if not points:
        return None
    if not plots.plottable_series({name: [(x, y) for x, y in series if y is not None and y > 0]  # log axis
                                   for name, series in points.items()}):
        seqs = ", ".join(str(s) for s in sorted({seq for series in points.values() for seq, _ in series}))
        return (f"not drawn: no series has values at two or more sequence lengths (measured: {seqs}); "
                "a plot against sequence length needs at least two")
    return plots.line_chart_png(points, xlabel="sequence length", logx=True, logy=True, **kwargs)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _validate_figures(results: list[dict]) -> list[tuple[str, bytes | str | None]]:
    histograms: dict[str, np.ndarray] = {}
    for r in results:
        for metrics in r["outputs"].values():
            counts = metrics["real"].get("abs_histogram")
            if counts:
                histograms[r["backend"]] = histograms.get(r["backend"], np.zeros(len(HIST_EDGES) + 1)) + counts
    worst_by_seq: dict[str, dict[int, float]] = {}
    for r in results:
        err = worst_abs_error(r)
        if err is not None:
            per_seq = worst_by_seq.setdefault(r["backend"], {})
            per_seq[r["input"]["seq"]] = max(err, per_seq.get(r["input"]["seq"], err))

    def by_backend(r):
        return variant_label(r["variant"]), r["backend"]

    latency = _median_by(results, by_backend, lambda r: _ms(r["timings"]["backend_s"]))
    latency.update(_median_by(results, lambda r: (variant_label(r["variant"]), "eager"),
                              lambda r: _ms(r["timings"]["eager_s"])))
    speedup = _median_by(results, by_backend, lambda r: r["timings"]["speedup"])
    return [
        ("Absolute error on real tokens, per backend (all cases)",
         plots.error_histogram_png(histograms) if histograms else None),
        ("Worst max abs error against sequence length",
         _against_seq({b: list(p.items()) for b, p in worst_by_seq.items()}, title="Error vs sequence length",
                      ylabel="max abs error")),
        ("Median latency per case", _bars(latency, title="Latency", ylabel="ms")),
        ("Median speedup against eager PyTorch", _bars(speedup, title="Speedup", ylabel="x eager", reference=1.0)),
    ]


def _bench_figures(results: list[dict]) -> list[tuple[str, bytes | str | None]]:
    def by_point(r):
        return f"{variant_label(r['variant'])} b{r['batch']} s{r['seq']}", r["backend"]

    def series(r):
        return f"{variant_label(r['variant'])} {r['backend']} b{r['batch']}"

    scaling: dict[str, list] = {}
    memory: dict[str, list] = {}
    for r in results:
        scaling.setdefault(series(r), []).append((r["seq"], r["latency_ms"]["p50"]))
        if r.get("peak_mb") is not None:
            memory.setdefault(series(r), []).append((r["seq"], r["peak_mb"]))
    p50 = _median_by(results, by_point, lambda r: r["latency_ms"]["p50"])
    speedup = _median_by(results, by_point, lambda r: headline_speedup(r)[0])
    intervals = {by_point(r): tuple(headline_speedup(r)[1]) for r in results if headline_speedup(r)[1]}

    return [
        ("p50 latency", _bars(p50, title="Latency p50", ylabel="ms")),
        ("Speedup against eager PyTorch at the backend's precision where timed (FP16 backends against eager FP16), "
         "same run (whiskers: 95% interval)",
         _bars(speedup, intervals, title="Speedup", ylabel="x eager", reference=1.0)),
        ("Time against sequence length", _against_seq(scaling, title="Scaling: time", ylabel="p50 ms")),
        ("Peak memory against sequence length", _against_seq(memory, title="Scaling: peak memory", ylabel="MB")),
    ]


def _all_figures(report: dict, attention_maps: dict[str, np.ndarray] | None) -> list[tuple[str, bytes | str]]:
    """(caption, PNG bytes, or why the plot was not drawn) for every plot the report has data for."""
    made = _bench_figures(report["results"]) if report["kind"] == "bench" else _validate_figures(report["results"])
    for name, matrix in (attention_maps or {}).items():
        made.append((f"Attention pattern: {name}", plots.heatmap_png(matrix, title=name)))
    return [(caption, png) for caption, png in made if png is not None]


def figures(report: dict, attention_maps: dict[str, np.ndarray] | None = None) -> list[tuple[str, bytes]]:
    """(caption, PNG bytes) of every plot drawn."""
    return [(caption, png) for caption, png in _all_figures(report, attention_maps) if isinstance(png, bytes)]


def _cell(text: str, classes: bool) -> str:
    # PASS/FAIL cells get a class of the same name so the CSS can colour them.
    attr = f' class="{text}"' if classes and text in ("PASS", "FAIL") else ""
    return f"<td{attr}>{esc(text)}</td>"


def _table(columns, rows, classes: bool = False) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(c, classes) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _case_rows(report: dict) -> list[list[str]]:
    return [[variant_label(r["variant"]), r["backend"], r["input"]["name"], str(r["input"]["batch"]),
             str(r["input"]["seq"]), "PASS" if r["verdict"]["passed"] else "FAIL", fmt(worst_abs_error(r), ".2e"),
             fmt(r["verdict"]["threshold"], ".2e"), r["verdict"]["reason"]] for r in report["results"]]


def _flatten(mapping: dict, prefix: str = "") -> list[list[str]]:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append([f"{prefix}{key}", MISSING if value is None else str(value)])
    return rows


def _img(caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def render_html(report: dict, attention_maps: dict[str, np.ndarray] | None = None) -> str:
    check_report(report)
    kind, tool = report["kind"], report["tool"]
    parts = [f"<h1>{esc(tool['name'])} {esc(kind)} report</h1>",
             f'<p class="meta">{esc(tool["name"])} {esc(tool["version"])} &middot; {esc(report["created"])}'
             f" &middot; schema {esc(report['schema_version'])}</p>"]
    if kind == "validate":
        s = report["summary"]
        verdict = "PASS" if s["all_passed"] else "FAIL"
        parts.append(f'<p><span class="{verdict}">{verdict}</span>: {s["passed"]}/{s["total"]} cases passed</p>')
    parts += ["<h2>Summary</h2>", _table(*summary_rows(report), classes=True)]
    if summary_note(report):
        parts.append(f'<p class="meta">{esc(summary_note(report))}</p>')
    failures = failure_lines(report)
    if failures:
        parts += ["<h2>Failures</h2>", "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in failures) + "</ul>"]
    plotted = _all_figures(report, attention_maps)
    if plotted:
        parts.append("<h2>Plots</h2>")
        for caption, png in plotted:  # a plot, or a line saying why it was not drawn
            parts.append(_img(caption, png) if isinstance(png, bytes)
                         else f'<p class="meta">{esc(caption)}: {esc(png)}</p>')
    if kind == "validate":
        columns = ("Variant", "Backend", "Input", "Batch", "Seq", "Result", "Max abs err", "Threshold", "Reason")
        parts += ["<h2>Cases</h2>", _table(columns, _case_rows(report), classes=True)]
    parts += ["<h2>Environment</h2>", _table(("Field", "Value"), _flatten(report["environment"]))]
    title = esc(f"{tool['name']} {kind} report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_html(report: dict, path: str | os.PathLike, attention_maps: dict[str, np.ndarray] | None = None) -> None:
    write_text(path, render_html(report, attention_maps))
