"""Texts from the command line and from files: nothing skipped silently, every bad line named."""

import pytest

from seo_export.errors import UsageError
from seo_export.text import collect_texts, read_text_file


def test_a_file_holds_one_text_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("\ufefffirst text\r\nsecond \u2028 still the second\nthird: café 日本\n".encode())
    assert read_text_file(path) == ["first text", "second \u2028 still the second", "third: café 日本"]
    path.write_text("no final newline\nlast")
    assert read_text_file(path) == ["no final newline", "last"]


@pytest.mark.parametrize("content,fragment", [
    (b"one\n\nthree\n", "line 2 is empty"),
    (b"one\n   \t\n", "line 2 is empty"),
    (b"one\n\n", "line 2 is empty"),  # a blank last line is a line, not the end of the file
    (b"", "has no text"),
    (b"ok\n\xff\xfe bad\n", "is not UTF-8 text"),
])
def test_bad_files_are_named(tmp_path, content, fragment):
    path = tmp_path / "texts.txt"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=fragment):
        read_text_file(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_text_file(tmp_path / "missing.txt")
    with pytest.raises(UsageError, match="is not a file"):
        read_text_file(tmp_path)


def test_texts_then_file_lines_in_order_with_labels(tmp_path):
    path = tmp_path / "more.txt"
    path.write_text("third\nfourth\n")
    collected = collect_texts(["first", "second"], [path])
    assert collected.texts == ["first", "second", "third", "fourth"]
    assert collected.labels == ["text 1", "text 2", "text 3 (more.txt line 1)", "text 4 (more.txt line 2)"]


@pytest.mark.parametrize("texts,fragment", [
    ([""], 'text 1 is empty (--text "")'),
    (["a", " "], "text 2 is empty"),
    ([], "no text to tokenize"),
])
def test_empty_texts_are_refused(texts, fragment):
    with pytest.raises(UsageError) as error:
        collect_texts(texts)
    assert fragment in str(error.value)
