"""Errors that reach users as one line: what is wrong and what to do.

They live in ``seo_plugins.errors`` (seo_plugins is the lower layer and raises them too).
"""

from seo_plugins.errors import MissingDependencyError, SeoExportError, UsageError

__all__ = ["MissingDependencyError", "SeoExportError", "UsageError"]
