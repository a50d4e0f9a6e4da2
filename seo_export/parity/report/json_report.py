"""report.json: strict JSON (no NaN), written atomically, read back with a schema check."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import numpy as np

from seo_export.errors import UsageError
from seo_export.parity.metrics import plain_float
from seo_export.parity.report.schema import ReportSchemaError, check_report
from seo_export.utils.files import atomic_write_text


def jsonable(value):
    """Numpy scalars/arrays to Python values and non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return plain_float(value)
    return value


def to_json_text(report: dict) -> str:
    clean = jsonable(report)
    check_report(clean)
    return json.dumps(clean, indent=2, allow_nan=False) + "\n"


@contextlib.contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError while writing a report to ``path`` into a one-line UsageError."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"cannot write report to {os.fspath(path)!r}: {exc.strerror or exc}") from exc


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic write: on failure ``path`` keeps its previous content (or stays absent)."""
    with write_errors(path):
        atomic_write_text(path, text)


def write_json(report: dict, path: str | os.PathLike) -> None:
    write_text(path, to_json_text(report))


def load_json(path: str | os.PathLike) -> dict:
    """Read a report, refusing files that are not JSON or not of this schema version."""
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read report {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportSchemaError(f"report {os.fspath(path)!r} is not valid JSON: {exc}") from exc
    check_report(report)
    return report
