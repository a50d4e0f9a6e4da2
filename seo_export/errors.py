"""Errors that reach users as one line: what is wrong and what to do."""


class SeoExportError(Exception):
    """Base for errors the CLI reports without a traceback; ``exit_code`` is the process status."""

    exit_code = 2


class UsageError(SeoExportError):
    """Bad input: a file, flag or value the user can fix."""


class MissingDependencyError(SeoExportError):
    """An optional dependency (TensorRT, a GPU, Triton) is not available here."""

    exit_code = 3
