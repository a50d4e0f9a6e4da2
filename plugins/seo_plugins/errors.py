"""Errors that reach users as one line: what is wrong and what to do.

Defined here, the lower layer, so the kernels' build and rules raise them without importing
seo_export; ``seo_export.errors`` re-exports them, so the CLI's ``except SeoExportError`` and
exit codes cover plugin errors too.
"""


class SeoExportError(Exception):
    """Base for errors the CLI reports without a traceback; ``exit_code`` is the process status."""

    exit_code = 2


class UsageError(SeoExportError):
    """Bad input: a file, flag or value the user can fix."""


class MissingDependencyError(SeoExportError):
    """An optional dependency (TensorRT, a GPU, Triton) is not available here."""

    exit_code = 3


def one_line(exc: BaseException) -> str:
    """``exc`` as one line for such messages: its type and the first line of its text."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
