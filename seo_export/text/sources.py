"""Where texts come from: command-line strings and text files of one text per line.

Nothing is skipped silently: an empty or whitespace-only text, or an empty line of a file, is an
error that names it. A file's lines are split on "\\n" only (a "\\r" before it is dropped), so a
Unicode line separator inside a text stays part of it; one final newline ends the last line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from seo_export.errors import UsageError


@dataclass
class Texts:
    texts: list[str]
    labels: list[str]  # how messages name each text: "text 2", "text 5 (reviews.txt line 3)"


def read_text_file(path: str | Path) -> list[str]:
    """The texts of a UTF-8 file, one per line; an empty line is an error naming its number."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"text file {path} does not exist")
    if not path.is_file():
        raise UsageError(f"text file {path} is not a file")
    try:
        content = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
    except UnicodeDecodeError as exc:
        raise UsageError(f"text file {path} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    except OSError as exc:
        raise UsageError(f"cannot read text file {path}: {exc.strerror or exc}") from None
    lines = content.split("\n")
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    if not lines:
        raise UsageError(f"text file {path} has no text")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise UsageError(f"text file {path} line {number} is empty; give one text per line")
    return lines


def collect_texts(texts: Sequence[str] | None = None, files: Sequence[str | Path] | None = None) -> Texts:
    """The batch: the given strings first, then each file's lines, in order."""
    collected = Texts([], [])
    for text in texts or ():
        collected.texts.append(text)
        collected.labels.append(f"text {len(collected.texts)}")
        if not text.strip():
            raise UsageError(f"text {len(collected.texts)} is empty" + (" (--text \"\")" if not text else ""))
    for file in files or ():
        for number, line in enumerate(read_text_file(file), start=1):
            collected.texts.append(line)
            collected.labels.append(f"text {len(collected.texts)} ({Path(file).name} line {number})")
    if not collected.texts:
        raise UsageError("no text to tokenize")
    return collected
