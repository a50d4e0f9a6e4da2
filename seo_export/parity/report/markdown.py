"""Tables people read: report.md for pull requests and the rich table the CLI prints.

Both render the same rows (``summary_rows``, ``failure_lines``), so they never disagree.
"""

from __future__ import annotations

import statistics

from rich.table import Table
from rich.text import Text

from seo_export.parity.report.schema import result_check, variant_label
from seo_export.parity.tolerance import Verdict

# Measured and Threshold come from one case, the one closest to (or furthest past) its bar: for
# FP32 the smallest passing atol against atol, for FP16 the max abs error against the FP16 bar.
VALIDATE_COLUMNS = ("Variant", "Backend", "Result", "Cases passed", "Closest case", "Measured", "Threshold",
                    "Speedup")
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
    closest = max(cases, key=lambda r: (not r["verdict"]["passed"], Verdict.from_dict(r["verdict"]).margin))
    speedups = [r["timings"]["speedup"] for r in cases if r["timings"]["speedup"] is not None]
    return [
        label,
        backend,
        "PASS" if passed == len(cases) else "FAIL",
        f"{passed}/{len(cases)}",
        closest["input"]["name"],
        fmt(closest["verdict"]["measured"], ".2e"),
        fmt(closest["verdict"]["threshold"], ".2e"),
        fmt(statistics.median(speedups) if speedups else None, ".2f", "x"),
    ]


def _bench_row(r: dict, fp16_baseline: bool) -> list[str]:
    lat = r["latency_ms"]
    speedups = [speedup_cell(r["speedup_vs_torch"], r.get("speedup_vs_torch_ci95"))]
    if fp16_baseline:
        speedups.append(speedup_cell(r.get("speedup_vs_torch_fp16"), r.get("speedup_vs_torch_fp16_ci95")))
    return [
        variant_label(r["variant"]), r["backend"], str(r["batch"]), str(r["seq"]),
        fmt(lat["p50"], ".2f"), fmt(lat["p90"], ".2f"), fmt(lat["p99"], ".2f"),
        fmt(r["throughput_seq_per_s"], ".1f"), *speedups, fmt(r.get("peak_mb"), ".0f"), fmt(r["threads"], "d"),
    ]


def has_fp16_baseline(report: dict) -> bool:
    """Whether the bench timed eager FP16 (on a GPU, for FP16 backends): then each point has two speedups."""
    return report["kind"] == "bench" and any("speedup_vs_torch_fp16" in r for r in report["results"])


def _bench_columns(fp16_baseline: bool) -> tuple[str, ...]:
    if not fp16_baseline:
        return BENCH_COLUMNS
    at = BENCH_COLUMNS.index("vs torch (95% CI)")
    return BENCH_COLUMNS[:at] + ("vs torch FP32 (95% CI)", "vs torch FP16 (95% CI)") + BENCH_COLUMNS[at + 1:]


def summary_note(report: dict) -> str | None:
    """Which speedup is the headline, when a bench report has two per point; what the rows of a
    validate report with conversion checks (``validate --hf``) compare."""
    if report["kind"] == "validate":
        references = sorted({r["backend"] for r in report["results"] if result_check(r) == "conversion"})
        if not references:
            return None
        return (f"Backend {', '.join(references)} checks the conversion: eager zoo PyTorch against the "
                f"{', '.join(references)} model (FP32 rule, valid tokens). The other backends check the export "
                "against eager zoo PyTorch.")
    if not has_fp16_baseline(report):
        return None
    fp16 = sorted({r["backend"] for r in report["results"] if r.get("precision") == "fp16"})
    return (f"Headline speedup: FP16 backends ({', '.join(fp16)}) against eager FP16 (vs torch FP16), the others "
            "against eager FP32; an FP16 backend against eager FP32 also counts the FP16/FP32 gap.")


def summary_rows(report: dict) -> tuple[tuple[str, ...], list[list[str]]]:
    """(column names, rows): variant x backend for validate, one row per point for bench."""
    if report["kind"] == "bench":
        fp16_baseline = has_fp16_baseline(report)
        return _bench_columns(fp16_baseline), [_bench_row(r, fp16_baseline) for r in report["results"]]
    return VALIDATE_COLUMNS, [_validate_row(label, backend, cases)
                              for (label, backend), cases in _group(report["results"]).items()]


def break_place(brk: dict) -> str:
    """``layers.1.attention (layer 1, attention block)``: the module name ``--keep-fp32`` takes, then in words."""
    if brk["layer"] is None:
        return brk["module"]
    return f"{brk['module']} (layer {brk['layer']}, {brk['block'].replace('_', ' ')} block)"


def failure_lines(report: dict) -> list[str]:
    """One line per failing validate case: what failed, by how much, and where it breaks."""
    if report["kind"] != "validate":
        return []
    lines = []
    for r in report["results"]:
        if r["verdict"]["passed"]:
            continue
        case = r["input"]
        if result_check(r) == "conversion":  # validate --hf: say that the conversion, not the export, differs
            line = (f"{variant_label(r['variant'])}: the conversion differs from {r['backend']} (eager zoo PyTorch "
                    f"vs {r['backend']}, not the export), input {case['name']}"
                    f" (batch {case['batch']}, seq {case['seq']}): {r['verdict']['reason']}")
        else:
            line = (f"{variant_label(r['variant'])} on {r['backend']}, input {case['name']}"
                    f" (batch {case['batch']}, seq {case['seq']}): {r['verdict']['reason']}")
        brk = r.get("break")
        if brk:
            line += f"; first leaves tolerance at {break_place(brk)}"
            if brk.get("fixed_by_fp32"):
                line += f"; keeping it in FP32 fixes it: export with {brk['flag']}"
            elif brk.get("fixed_by_fp32") is False:
                line += "; keeping it in FP32 does not fix it"
            elif brk.get("note"):
                line += f"; {brk['note']}"
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
    if summary_note(report):
        out += ["", summary_note(report)]
    failures = failure_lines(report)
    if failures:
        out += ["", "## Failures", ""] + [f"- {_md_cell(line)}" for line in failures]
    out += int8_accuracy_lines(report)
    return "\n".join(out) + "\n"


def int8_accuracy_lines(report: dict) -> list[str]:
    """A bench report's INT8 rule figures (ort-int8 against eager FP32 on the timed inputs), if any."""
    rows = [r for r in report["results"] if r.get("accuracy")] if report["kind"] == "bench" else []
    if not rows:
        return []
    out = ["", "## INT8 accuracy (ort-int8 against eager FP32, on the timed inputs)", "",
           "| Variant | Batch | Seq | min token cosine | mean token cosine | max pooled rel | top-1 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        a = r["accuracy"]
        out.append(f"| {variant_label(r['variant'])} | {r['batch']} | {r['seq']} | {fmt(a.get('min_token_cosine'), '.6f')} "
                   f"| {fmt(a.get('mean_token_cosine'), '.6f')} | {fmt(a.get('max_pooled_rel'), '.4f')} "
                   f"| {fmt(a.get('top1_agreement'), '.3f')} |")
    return out


def summary_table(report: dict) -> Table:
    """The same summary as a rich Table, for the end of a CLI sweep."""
    columns, rows = summary_rows(report)
    table = Table(title=f"seo-export {report['kind']}", caption=summary_note(report))
    for name in columns:
        # Variant names are the key of the table: never truncate them.
        table.add_column(name, justify="left" if name in ("Variant", "Backend") else "right",
                         no_wrap=name in ("Variant", "Backend"), min_width=len(name))
    styles = {"PASS": "green", "FAIL": "bold red"}
    for row in rows:
        # Text cells, not markup strings: a '[' in a variant name must not be read as rich markup.
        table.add_row(*(Text(cell, style=styles.get(cell, "")) for cell in row))
    return table
