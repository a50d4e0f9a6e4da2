"""``seo-export convert`` as users run it: the output feeds ``export`` unchanged; errors are one line,
exit 2, and leave nothing behind."""

import json

import pytest

from seo_export.cli.main import main
from tests.cli.helpers import assert_one_line_stderr, seo_export
from tests.convert.helpers import copy_checkpoint


def convert(capsys, *args):
    capsys.readouterr()  # drop what building the checkpoints printed
    code = main(["convert", *map(str, args)])
    return code, capsys.readouterr()


def test_convert_then_export_with_the_output(checkpoint, tmp_path, capsys):
    source = copy_checkpoint(checkpoint("longformer")[0], tmp_path / "hf")
    (source / "vocab.json").write_text('{"<s>": 0}')
    (source / "tokenizer_config.json").write_text('{"model_max_length": 62}')
    out = tmp_path / "zoo"
    code, captured = convert(capsys, source, "-o", out)
    assert code == 0, captured.err
    assert "next: seo-export export" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "conversion.json", "model.safetensors", "tokenizer_config.json", "vocab.json"]
    assert (out / "vocab.json").read_bytes() == (source / "vocab.json").read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert (config["attention_type"], config["attention_window_size"], config["positional_encoding_max_len"]) == (
        "local", 4, 62)
    record = json.loads((out / "conversion.json").read_text())
    assert record["source"]["model_type"] == "longformer"
    assert record["tokenizer_files"] == ["tokenizer_config.json", "vocab.json"]

    # The console script, as users run it.
    exported = seo_export("export", "--config", out / "config.json", "--checkpoint", out / "model.safetensors",
                          "-o", tmp_path / "model.onnx")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "model.onnx").is_file()


@pytest.mark.parametrize("setup, fragments", [
    ("missing", ("is not a directory",)),
    ("empty", ("has no config.json",)),
    ("head", ("BertForPreTraining", "--encoder-only")),
])
def test_cli_errors_are_one_line_exit_2_and_write_nothing(setup, fragments, checkpoint, tmp_path, capsys):
    source = tmp_path / "in"
    if setup == "empty":
        source.mkdir()
    elif setup == "head":
        copy_checkpoint(checkpoint("bert", "BertForPreTraining")[0], source)
    before = sorted(tmp_path.iterdir())
    code, captured = convert(capsys, source, "-o", tmp_path / "out")
    assert code == 2
    assert_one_line_stderr(captured.err, "seo-export convert: error:", *fragments)
    assert sorted(tmp_path.iterdir()) == before


def test_an_existing_output_is_replaced_only_with_overwrite(checkpoint, tmp_path, capsys):
    source, out = checkpoint("bert")[0], tmp_path / "zoo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, captured = convert(capsys, source, "-o", out)
    assert code == 2
    assert_one_line_stderr(captured.err, "is not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    code, _ = convert(capsys, source, "-o", out, "--overwrite")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "conversion.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]  # no temporaries left


def test_the_package_exports_convert_hf(checkpoint):
    import seo_export

    assert seo_export.convert_hf(checkpoint("roformer")[0]).config.positional_encoding_type == "rotary"
