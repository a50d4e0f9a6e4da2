"""Reports of ``validate`` and ``bench``: report.json (schema in SCHEMA.md), report.md, report.html."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from seo_export.parity.report.html import render_html, write_html
from seo_export.parity.report.json_report import load_json, to_json_text, write_errors, write_json
from seo_export.parity.report.markdown import render_markdown, summary_table
from seo_export.parity.report.schema import (
    SCHEMA_VERSION,
    ReportSchemaError,
    bench_report,
    bench_result,
    check_report,
    make_break,
    make_input,
    make_variant,
    validate_report,
    validate_result,
    variant_label,
)
from seo_export.utils.files import atomic_path

REPORT_FILES = ("report.json", "report.md", "report.html")


def write_report_dir(report: dict, directory: str | os.PathLike,
                     attention_maps: dict[str, np.ndarray] | None = None) -> dict[str, Path]:
    """Write the three report files into ``directory``; an error while rendering or writing leaves none."""
    directory = Path(directory)
    check_report(report)  # before creating anything
    with write_errors(directory):
        directory.mkdir(parents=True, exist_ok=True)  # fail on a bad directory before the slow plots
    texts = dict(zip(REPORT_FILES, (to_json_text(report), render_markdown(report),
                                    render_html(report, attention_maps))))
    # Temporaries are renamed over their targets only after every one of them is written.
    with write_errors(directory), contextlib.ExitStack() as stack:
        for name, text in texts.items():
            stack.enter_context(atomic_path(directory / name)).write_bytes(text.encode())
    return {name: directory / name for name in texts}


__all__ = [
    "REPORT_FILES",
    "SCHEMA_VERSION",
    "ReportSchemaError",
    "bench_report",
    "bench_result",
    "check_report",
    "load_json",
    "make_break",
    "make_input",
    "make_variant",
    "render_html",
    "render_markdown",
    "summary_table",
    "to_json_text",
    "validate_report",
    "validate_result",
    "variant_label",
    "write_html",
    "write_json",
    "write_report_dir",
]
