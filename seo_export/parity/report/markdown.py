"""Tables people read: report.md for pull requests and the rich table the CLI prints.

Both render the same rows (``summary_rows``, ``failure_lines``), so they never disagree.
"""

from __future__ import annotations

import statistics

from rich.table import Table
from rich.text import Text

from seo_export.parity.report.schema import variant_label
from seo_export.parity.tolerance import Verdict

VALIDATE_COLUMNS = ("Variant", "Backend", "Result", "Cases passed", "Worst max abs err", "Threshold", "Speedup")
BENCH_COLUMNS = ("Variant", "Backend", "Batch", "Seq", "p50 ms", "p90 ms", "p99 ms", "seq/s", "vs torch (95% CI)",
                 "Peak MB", "Threads")
MISSING = "-"


def fmt(value: float | None, spec: str = ".3g", suffix: str = "") -> str:
    return MISSING if value is None else f"{value:{spec}}{suffix}"


def speedup_cell(speedup: float | None, interval: list[float] | None = None) -> str:
    """``1.23x``, with its 95% interval when known: ``1.23x (1.10-1.31)``."""
    text = fmt(speedup, ".2f", "x")
    if speedup is not None and interval is not None:
        text += f" ({interval[0]:.2f}-{interval[1]:.2f})"
    return text


def worst_abs_error(result: dict) -> float | None:
    """Largest max abs error on real tokens over a validate result's outputs."""
    errors = [m["real"]["abs"]["max"] for m in result["outputs"].values() if m["real"]["abs"]["max"] is not None]
    return max(errors) if errors else None


def _group(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((variant_label(r["variant"]), r["backend"]), []).append(r)
    return groups


def _validate_row(label: str, backend: str, cases: list[dict]) -> list[str]:
    passed = sum(r["verdict"]["passed"] for r in cases)
    # The threshold shown is the one of the case closest to (or furthest past) its bar.
    worst = max((Verdict.from_dict(r["verdict"]) for r in cases), key=lambda v: (not v.passed, v.margin))
    errors = [e for e in map(worst_abs_error, cases) if e is not None]
    speedups = [r["timings"]["speedup"] for r in cases if r["timings"]["speedup"] is not None]
    return [
        label,
        backend,
        "PASS" if passed == len(cases) else "FAIL",
        f"{passed}/{len(cases)}",
        fmt(max(errors) if errors else None, ".2e"),
        fmt(worst.threshold, ".2e"),
        fmt(statistics.median(speedups) if speedups else None, ".2f", "x"),
    ]


def _bench_row(r: dict) -> list[str]:
    lat = r["latency_ms"]
    return [
        variant_label(r["variant"]), r["backend"], str(r["batch"]), str(r["seq"]),
        fmt(lat["p50"], ".2f"), fmt(lat["p90"], ".2f"), fmt(lat["p99"], ".2f"),
        fmt(r["throughput_seq_per_s"], ".1f"), speedup_cell(r["speedup_vs_torch"], r.get("speedup_vs_torch_ci95")),
        fmt(r.get("peak_mb"), ".0f"), fmt(r["threads"], "d"),
    ]


def summary_rows(report: dict) -> tuple[tuple[str, ...], list[list[str]]]:
    """(column names, rows): variant x backend for validate, one row per point for bench."""
    if report["kind"] == "bench":
        return BENCH_COLUMNS, [_bench_row(r) for r in report["results"]]
    return VALIDATE_COLUMNS, [_validate_row(label, backend, cases)
                              for (label, backend), cases in _group(report["results"]).items()]


def failure_lines(report: dict) -> list[str]:
    """One line per failing validate case: what failed, by how much, and where it breaks."""
    if report["kind"] != "validate":
        return []
    lines = []
    for r in report["results"]:
        if r["verdict"]["passed"]:
            continue
        case = r["input"]
        line = (f"{variant_label(r['variant'])} on {r['backend']}, input {case['name']}"
                f" (batch {case['batch']}, seq {case['seq']}): {r['verdict']['reason']}")
        brk = r.get("break")
        if brk:
            line += f"; first leaves tolerance at layer {brk['layer']}, block {brk['block']}"
            if brk.get("fixed_by_fp32"):
                line += f"; keeping that block in FP32 fixes it ({brk['flag'] or 'no flag'})"
            elif brk.get("fixed_by_fp32") is False:
                line += "; keeping that block in FP32 does not fix it"
        lines.append(line)
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict) -> str:
    columns, rows = summary_rows(report)
    tool = report["tool"]
    out = [f"# seo-export {report['kind']} report", "",
           f"{tool['name']} {tool['version']}, {report['created']}, schema {report['schema_version']}", ""]
    if report["kind"] == "validate":
        s = report["summary"]
        out += [f"**{'ALL PASSED' if s['all_passed'] else 'FAILED'}**: {s['passed']}/{s['total']} cases passed.", ""]
    out.append("| " + " | ".join(columns) + " |")
    out.append("|" + "|".join("---" for _ in columns) + "|")
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    failures = failure_lines(report)
    if failures:
        out += ["", "## Failures", ""] + [f"- {_md_cell(line)}" for line in failures]
    return "\n".join(out) + "\n"


def summary_table(report: dict) -> Table:
    """The same summary as a rich Table, for the end of a CLI sweep."""
    columns, rows = summary_rows(report)
    table = Table(title=f"seo-export {report['kind']}")
    for name in columns:
        # Variant names are the key of the table: never truncate them.
        table.add_column(name, justify="left" if name in ("Variant", "Backend") else "right",
                         no_wrap=name in ("Variant", "Backend"), min_width=len(name))
    styles = {"PASS": "green", "FAIL": "bold red"}
    for row in rows:
        # Text cells, not markup strings: a '[' in a variant name must not be read as rich markup.
        table.add_row(*(Text(cell, style=styles.get(cell, "")) for cell in row))
    return table
