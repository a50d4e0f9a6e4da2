"""Where benchmark drivers keep their numbers: NAME.json (data) and NAME.md (the table), atomically."""

from __future__ import annotations

import json
from pathlib import Path

from seo_export.utils.files import atomic_write_text


def write_results(out_dir: str | Path, name: str, result: dict, markdown: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"{name}.md", markdown)
