"""File helpers: atomic writes (a target path never holds a half-written file) and hashes."""

from __future__ import annotations

import hashlib
import os

# Atomic writes live in seo_plugins, the lower layer, whose AOT build writes files too.
from seo_plugins.files import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "sha256_file"]


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
