"""`--tokenizer DIR --text ...` on `run`, `validate` and `bench`, as users call them, and every refusal:
exit 2, one line, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seo_export.cli.main import main
from seo_export.models import TransformerConfig
from tests.cli.test_build_run import tiny_onnx
from tests.text.helpers import PAD, SEP

#: Learned positions: the model takes at most 24 tokens (the tokenizer allows 512).
CONFIG = TransformerConfig(num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=300,
                           positional_encoding_type="learned", positional_encoding_max_len=24,
                           dropout_rate=0.0, attention_dropout=0.0)
SHORT, MEDIUM = "Search engines rank pages.", "Café über naïve text about the quality of every page."
LONG = ("Internal linking uses embeddings to cluster related articles about the quality of content on every page, "
        "and long articles are split into sections with clear headings so readers and crawlers find their way.")
QUICK = ["--warmup", "0", "--iterations", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer_dir):
    """The tiny model (its outputs are its masked word embeddings: they show every id and mask value),
    one whose vocabulary is too small for the tokenizer, bad tokenizer folders and text files."""
    root = tmp_path_factory.mktemp("text_cli")
    tiny_onnx(root / "tiny.onnx", CONFIG)
    tiny_onnx(root / "small_vocab.onnx", CONFIG.replace(vocab_size=20))
    (root / "no_tokenizer").mkdir()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "tokenizer.json").write_text('{"model": {"type": "WordPiece", "vocab": ')
    (root / "texts.txt").write_text(f"{SHORT}\n{MEDIUM}\n")
    (root / "blank_line.txt").write_text(f"{SHORT}\n\n{MEDIUM}\n")
    np.savez(root / "ids.npz", input_ids=np.ones((1, 4), dtype=np.int64))
    CONFIG.to_json(root / "config.json")
    return {"root": root, "tok": tokenizer_dir}


def transformers_ids(tokenizer_dir, texts, **kwargs):
    transformers = pytest.importorskip("transformers")
    batch = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))(texts, padding=True, return_tensors="np",
                                                                            **kwargs)
    return {k: np.asarray(batch[k], dtype=np.int64) for k in ("input_ids", "attention_mask")}


def tokens(tokenizer_dir, text) -> int:
    """How many tokens ``text`` has, special tokens included."""
    from seo_export.text import load_tokenizer

    return len(load_tokenizer(tokenizer_dir).tokenizer.encode(text).ids)


def load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def one_error_line(capsys, command: str, *fragments) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"seo-export {command}: error: ") and "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


# ---- run -----------------------------------------------------------------------------------------------------

def test_run_on_texts_equals_run_on_the_same_ids(files, tmp_path, capsys):
    root, tok = files["root"], files["tok"]
    expected = transformers_ids(tok, [SHORT, MEDIUM])
    np.savez(tmp_path / "expected.npz", **expected)
    assert main(["run", str(root / "tiny.onnx"), "--tokenizer", str(tok), "--text", SHORT, "--text", MEDIUM,
                 "--output", str(tmp_path / "text.npz"), "--save-inputs", str(tmp_path / "in.npz"), *QUICK]) == 0
    assert main(["run", str(root / "tiny.onnx"), "--inputs", str(tmp_path / "expected.npz"),
                 "--output", str(tmp_path / "ids.npz"), *QUICK]) == 0
    assert main(["run", str(root / "tiny.onnx"), "--tokenizer", str(tok), "--text-file", str(root / "texts.txt"),
                 "--output", str(tmp_path / "file.npz"), *QUICK]) == 0
    assert "batch 2, seq" in capsys.readouterr().out

    saved = load(tmp_path / "in.npz")  # --save-inputs: the tokenized feeds
    assert set(saved) == {"input_ids", "attention_mask"}
    for name in saved:
        np.testing.assert_array_equal(saved[name], expected[name])
    length = expected["attention_mask"][0].sum()
    assert expected["attention_mask"][0].sum() < expected["input_ids"].shape[1]  # row 0 is padded
    assert saved["input_ids"][0, length - 1] == SEP and (saved["input_ids"][0, length:] == PAD).all()
    text, ids, from_file = load(tmp_path / "text.npz"), load(tmp_path / "ids.npz"), load(tmp_path / "file.npz")
    assert text["last_hidden_state"].shape == (2, expected["input_ids"].shape[1], CONFIG.hidden_size)
    for name in ids:
        np.testing.assert_array_equal(text[name], ids[name])
        np.testing.assert_array_equal(from_file[name], ids[name])


def test_run_truncates_with_one_notice_per_text(files, tmp_path, capsys):
    root, tok = files["root"], files["tok"]
    assert main(["run", str(root / "tiny.onnx"), "--tokenizer", str(tok), "--text", LONG, "--text", SHORT,
                 "--text", LONG + " again", "--truncate", "--output", str(tmp_path / "out.npz"), *QUICK]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2 and all(line.startswith("seo-export run: note: text ") for line in err), err
    assert "text 1: " in err[0] and "text 3: " in err[1]
    assert all(line.endswith("tokens truncated to 24 (the model takes at most 24)") for line in err)
    expected = transformers_ids(tok, [LONG, SHORT, LONG + " again"], truncation=True, max_length=24)
    outputs = load(tmp_path / "out.npz")
    assert outputs["last_hidden_state"].shape == (3, 24, CONFIG.hidden_size)
    np.savez(tmp_path / "expected.npz", **expected)
    assert main(["run", str(root / "tiny.onnx"), "--inputs", str(tmp_path / "expected.npz"),
                 "--output", str(tmp_path / "ids.npz"), *QUICK]) == 0
    np.testing.assert_array_equal(outputs["last_hidden_state"], load(tmp_path / "ids.npz")["last_hidden_state"])


def test_max_length_lowers_the_limit(files, tmp_path, capsys):
    root, tok = files["root"], files["tok"]
    assert main(["run", str(root / "tiny.onnx"), "--tokenizer", str(tok), "--text", MEDIUM, "--max-length", "6",
                 "--truncate", "--output", str(tmp_path / "out.npz"), *QUICK]) == 0
    assert load(tmp_path / "out.npz")["last_hidden_state"].shape == (1, 6, CONFIG.hidden_size)
    assert "truncated to 6 (--max-length is 6)" in capsys.readouterr().err


TOK = ["--tokenizer", "{tok}"]
RUN_ERRORS = [
    ([*TOK, "--text", LONG], "text 1 has {n} tokens; the model takes at most 24; pass --truncate to cut it"),
    ([*TOK, "--text", SHORT, "--text", MEDIUM, "--max-length", "5"],
     "text 1 has 7 tokens; --max-length is 5; pass --truncate to cut it"),
    ([*TOK, "--text", ""], 'text 1 is empty (--text "")'),
    ([*TOK, "--text", SHORT, "--text", "  "], "text 2 is empty"),
    ([*TOK, "--text-file", "{root}/blank_line.txt"], "blank_line.txt line 2 is empty"),
    ([*TOK, "--text-file", "{root}/missing.txt"], "text file {root}/missing.txt does not exist"),
    ([*TOK, "--text", SHORT, "--inputs", "{root}/ids.npz"], "give --text/--text-file or --inputs, not both"),
    ([*TOK, "--text", SHORT, "--batch", "2"], "give --text/--text-file or --batch/--seq-len, not both"),
    ([*TOK, "--text", SHORT, "--seq-len", "8"], "give --text/--text-file or --batch/--seq-len, not both"),
    (["--tokenizer", "{root}/no_tokenizer", "--text", SHORT], "no_tokenizer has no tokenizer.json"),
    (["--tokenizer", "{root}/corrupt", "--text", SHORT], "is not a tokenizer file the tokenizers library can read"),
    (["--tokenizer", "{root}/nowhere", "--text", SHORT], "tokenizer {root}/nowhere does not exist"),
    (["--text", SHORT], "--text and --text-file need --tokenizer DIR"),
    (["--truncate"], "--truncate applies to text inputs; add --text or --text-file"),
    ([*TOK, "--batch", "2"], "--tokenizer applies to text inputs; add --text or --text-file"),
]


@pytest.mark.parametrize("args,fragment", RUN_ERRORS)
def test_run_refusals_are_one_line_and_write_nothing(files, tmp_path, capsys, args, fragment):
    root, tok = files["root"], files["tok"]
    code = main(["run", str(root / "tiny.onnx"), *(a.format(root=root, tok=tok) for a in args),
                 "--output", str(tmp_path / "out.npz"), "--save-inputs", str(tmp_path / "in.npz")])
    one_error_line(capsys, "run", fragment.format(root=root, n=tokens(tok, LONG)))
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_too_big_for_the_model_names_both_sizes(files, tmp_path, capsys):
    root, tok = files["root"], files["tok"]
    code = main(["run", str(root / "small_vocab.onnx"), "--tokenizer", str(tok), "--text", MEDIUM,
                 "--output", str(tmp_path / "out.npz")])
    assert code == 2
    one_error_line(capsys, "run", "has 300 tokens but the model's vocab_size is 20", "do not belong together")
    assert list(tmp_path.iterdir()) == []


def test_the_console_script_exits_2_with_one_line(files, tmp_path):
    from tests.cli.helpers import assert_one_line_error, seo_export

    result = seo_export("run", files["root"] / "tiny.onnx", "--tokenizer", files["tok"], "--text", LONG,
                        "--output", tmp_path / "out.npz")
    assert result.returncode == 2
    assert_one_line_error(result, "tokens; the model takes at most 24; pass --truncate to cut it")
    assert list(tmp_path.iterdir()) == []


# ---- validate and bench --------------------------------------------------------------------------------------

def test_validate_on_texts_passes_with_one_text_case(files, tmp_path, capsys):
    root, tok = files["root"], files["tok"]
    code = main(["validate", "--config", str(root / "config.json"), "--backends", "ort-fp32", "--no-locate",
                 "--tokenizer", str(tok), "--text", SHORT, "--text", MEDIUM, "--report-dir", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    expected = transformers_ids(tok, [SHORT, MEDIUM])["input_ids"].shape
    assert report["results"] and {(r["input"]["name"], r["input"]["batch"], r["input"]["seq"])
                                  for r in report["results"]} == {("text", *expected)}
    assert all(r["verdict"]["passed"] for r in report["results"])


@pytest.mark.parametrize("args,fragment", [
    (["--text", SHORT, "--inputs", "{root}/ids.npz"], "give --text/--text-file or --inputs, not both"),
    (["--text", SHORT, "--batch", "2"], "give --text/--text-file or --batch, not both"),
    (["--text", MEDIUM, "--max-len", "5"], "text 1 has {n} tokens; --max-len is 5; pass --truncate to cut it"),
    (["--text-file", "{root}/blank_line.txt"], "line 2 is empty"),
])
def test_validate_refusals(files, tmp_path, capsys, args, fragment):
    root, tok = files["root"], files["tok"]
    code = main(["validate", "--config", str(root / "config.json"), "--backends", "ort-fp32", "--tokenizer", str(tok),
                 *(a.format(root=root) for a in args), "--report-dir", str(tmp_path / "r")])
    assert code == 2
    one_error_line(capsys, "validate", fragment.format(n=tokens(tok, MEDIUM)))
    assert not (tmp_path / "r").exists()


def test_bench_on_texts_times_those_ids_at_their_shape(files, tmp_path, capsys, monkeypatch):
    import seo_export.bench.sweep as sweep

    def no_random_inputs(*args, **kwargs):
        raise AssertionError("bench timed random ids instead of the texts")

    monkeypatch.setattr(sweep, "bench_inputs", no_random_inputs)
    root, tok = files["root"], files["tok"]
    code = main(["bench", "--config", str(root / "config.json"), "--backends", "torch,ort", "--no-memory", *QUICK,
                 "--tokenizer", str(tok), "--text", SHORT, "--text", MEDIUM, "--text", LONG, "--truncate",
                 "--report-dir", str(tmp_path / "r")])
    assert code == 0
    assert "note: text 3: " in capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    mask = transformers_ids(tok, [SHORT, MEDIUM, LONG], truncation=True, max_length=24)["attention_mask"]
    assert {(r["backend"], r["batch"], r["seq"]) for r in report["results"]} == {("torch", 3, 24), ("ort", 3, 24)}
    assert report["environment"]["bench"]["inputs"].startswith(f"given ids [3, 24], {mask.sum()} real tokens")
    assert f"- inputs: given ids [3, 24], {mask.sum()} real tokens" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("args,fragment", [
    (["--batch", "2"], "give --text/--text-file or --batch, not both"),
    (["--seq", "8"], "give --text/--text-file or --seq, not both"),
    (["--max-length", "4"], "text 1 has 7 tokens; --max-length is 4; pass --truncate to cut it"),
])
def test_bench_refusals(files, tmp_path, capsys, args, fragment):
    root, tok = files["root"], files["tok"]
    code = main(["bench", "--config", str(root / "config.json"), "--backends", "torch", "--tokenizer", str(tok),
                 "--text", SHORT, *args, "--report-dir", str(tmp_path / "r")])
    assert code == 2
    one_error_line(capsys, "bench", fragment)
    assert not (tmp_path / "r").exists()
