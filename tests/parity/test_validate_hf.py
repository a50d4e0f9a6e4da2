"""validate --hf: transformers itself beside eager zoo PyTorch. Tiny random BERT, RoFormer and Longformer
checkpoints (tests/convert/helpers, sharpened so attention is peaked) pass; a conversion broken on purpose
fails the conversion's check, named on the terminal, while the export still passes; bad input is one line."""

import argparse
import json
import sys

import numpy as np
import pytest

pytest.importorskip("transformers", reason="validate --hf runs transformers (.[test])")

from seo_export.cli.main import main  # noqa: E402
from seo_export.parity.report import ReportSchemaError, check_report, validate_report  # noqa: E402
from tests.cli.helpers import assert_one_line_stderr  # noqa: E402
from tests.convert.helpers import save_tiny  # noqa: E402

FAST = ["--backends", "ort-fp32", "--max-len", "8", "--batch", "2"]
ENV = {"python": "3.11", "platform": "linux", "cpu": {"model": "test cpu", "count": 2}, "gpu": None,
       "threads": {"torch": 2}, "packages": {}}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {family: save_tiny(root / family, family)[0] for family in ("bert", "roformer", "longformer")}


def validate(capsys, *args):
    code = main(["validate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(report_dir, backend):
    report = json.loads((report_dir / "report.json").read_text())
    return [r for r in report["results"] if r["backend"] == backend]


@pytest.mark.parametrize("family", ["bert", "roformer", "longformer"])
def test_a_converted_checkpoint_matches_transformers_and_its_export(family, hf_dirs, tmp_path, capsys):
    code, out, err = validate(capsys, "--hf", hf_dirs[family], *FAST, "--report-dir", tmp_path)
    assert code == 0, out + err
    conversion, export = rows(tmp_path, "transformers"), rows(tmp_path, "ort-fp32")
    assert conversion and export and len(conversion) == len(export)
    assert all(r["check"] == "conversion" and r["verdict"]["passed"] for r in conversion)
    assert all("check" not in r and r["verdict"]["passed"] for r in export)
    for r in conversion:
        # RoFormer has no pooler: transformers gives none, so only last_hidden_state is compared
        expected = {"last_hidden_state"} if family == "roformer" else {"last_hidden_state", "pooler_output"}
        assert set(r["outputs"]) == expected
        assert max(m["real"]["abs"]["max"] for m in r["outputs"].values()) < 1e-5
    assert "transformers" in out and "ort-fp32" in out
    assert "conversion (transformers vs eager zoo PyTorch)" in err and "FAIL" not in err
    markdown = (tmp_path / "report.md").read_text()
    assert "| transformers | PASS |" in markdown and "checks the conversion" in markdown
    assert "transformers" in (tmp_path / "report.html").read_text()


def test_a_broken_conversion_fails_the_conversion_not_the_export(hf_dirs, tmp_path, capsys, monkeypatch):
    from seo_export.convert import roformer

    # The q/k row permutation removed: transformers' interleaved rotary pairs meet the zoo's half-split ones.
    monkeypatch.setattr(roformer, "half_split_rows", lambda heads, head_dim: (lambda tensor: tensor))
    code, out, err = validate(capsys, "--hf", hf_dirs["roformer"], *FAST, "--report-dir", tmp_path)
    assert code == 1, out + err
    conversion, export = rows(tmp_path, "transformers"), rows(tmp_path, "ort-fp32")
    assert all(r["verdict"]["passed"] for r in export)  # the export computes what the (wrong) zoo model does
    failed = [r for r in conversion if not r["verdict"]["passed"]]
    assert failed and all(r["input"]["seq"] > 1 for r in failed)  # one token: rotary at position 0 is identity
    assert all(r["break"]["module"] == "layers.0.attention" for r in failed)
    case = failed[0]["input"]["name"]
    assert f"the conversion differs from transformers (eager zoo PyTorch vs transformers, not the export), " \
           f"input {case}" in err
    assert "last_hidden_state" in err and "first leaves tolerance at layers.0.attention" in err
    assert "the converted model differs from transformers, not the export" in err
    assert f"export (eager zoo PyTorch vs the backends): {len(export)}/{len(export)} cases pass" in err


def test_longformer_positions_off_by_one_fail_at_the_embeddings(hf_dirs, monkeypatch):
    from seo_export.convert import longformer
    from seo_export.parity.cases import make_cases
    from seo_export.parity.transformers_reference import TransformersReference

    convert = longformer.convert

    def off_by_one(checkpoint, tensors):
        config, mapping = convert(checkpoint, tensors)
        pad, rows_ = config.pad_token_id, config.positional_encoding_max_len
        mapping.state["embeddings.positional.embedding.weight"] = \
            tensors["embeddings.position_embeddings.weight"][pad:pad + rows_]  # from pad, not pad + 1
        return config, mapping

    reference = TransformersReference.from_dir(hf_dirs["longformer"])
    honest = reference.conversion.model()
    monkeypatch.setattr(longformer, "convert", off_by_one)
    broken = TransformersReference.from_dir(hf_dirs["longformer"]).conversion.model()
    cases = reference.prepare_cases(make_cases(reference.config, batch=2, max_len=8))
    variant = {"attention": "local", "positional": "learned", "causal": False}
    for case in cases:
        good = reference.check_case(honest, variant, case, 1e-4, 1e-4)
        bad = reference.check_case(broken, variant, case, 1e-4, 1e-4)
        assert good["verdict"]["passed"], good["verdict"]["reason"]
        assert not bad["verdict"]["passed"] and bad["break"]["module"] == "embeddings"
        assert bad["check"] == "conversion" and bad["backend"] == "transformers"
    check_report(validate_report([good, bad], environment=ENV))


def test_a_task_models_logits_are_compared_where_both_have_them(tmp_path):
    from seo_export.parity.cases import make_cases
    from seo_export.parity.transformers_reference import TransformersReference

    path, _ = save_tiny(tmp_path / "cls", "bert", "BertForSequenceClassification")
    reference = TransformersReference.from_dir(path)
    assert reference.config.num_labels == 2  # the converter keeps the classification head
    model = reference.conversion.model()
    variant = {"attention": "standard", "positional": "learned", "causal": False}
    for case in reference.prepare_cases(make_cases(reference.config, batch=2, max_len=8)):
        result = reference.check_case(model, variant, case, 1e-4, 1e-4)
        assert set(result["outputs"]) == {"last_hidden_state", "pooler_output", "logits"}
        assert result["outputs"]["logits"]["padded"]["count"] == 0  # [batch, labels]: no sequence axis
        assert result["verdict"]["passed"], result["verdict"]["reason"]


def test_longformer_cases_hold_its_pad_id_where_padded_only(hf_dirs):
    from seo_export.parity.cases import make_cases
    from seo_export.parity.transformers_reference import TransformersReference

    reference = TransformersReference.from_dir(hf_dirs["longformer"])
    pad = reference.config.pad_token_id
    assert pad == 1
    cases = reference.prepare_cases(make_cases(reference.config, batch=4, max_len=256))
    assert max(c.seq for c in cases) <= reference.max_len == 62  # 64 rows, counted from pad_token_id + 1
    for case in cases:
        ids, real = case.feeds["input_ids"], case.real_mask
        assert (ids[~real] == pad).all() and not (ids[real] == pad).any()


def test_an_input_past_the_checkpoints_positions_is_refused(hf_dirs, tmp_path, capsys):
    np.savez(tmp_path / "long.npz", input_ids=np.full((1, 70), 5, dtype=np.int64))
    code, _, err = validate(capsys, "--hf", hf_dirs["bert"], "--backends", "ort-fp32", "--inputs",
                            tmp_path / "long.npz")
    assert code == 2
    assert_one_line_stderr(err, "long.npz has 70 tokens", "at most 64")


def test_a_directory_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    code, out, err = validate(capsys, "--hf", tmp_path, "--backends", "ort-fp32", "--report-dir", tmp_path / "r")
    assert code == 2 and not out
    assert_one_line_stderr(err, "seo-export validate: error:", "no config.json")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, flag", [
    (["--config", "c.json"], "--config"), (["--checkpoint", "w.safetensors"], "--checkpoint"),
    (["--model", "m.onnx"], "--model"), (["--all"], "--all"), (["--attention", "local"], "--attention"),
    (["--positional", "rotary"], "--positional"), (["--causal"], "--causal"), (["--init", "default"], "--init"),
])
def test_flags_that_choose_another_model_are_refused_beside_hf(extra, flag, tmp_path, capsys):
    code, _, err = validate(capsys, "--hf", tmp_path, *extra)
    assert code == 2
    assert_one_line_stderr(err, "--hf validates the checkpoint", f"leave out {flag}")


def test_without_transformers_hf_names_the_extra(hf_dirs, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    code, _, err = validate(capsys, "--hf", hf_dirs["bert"], "--backends", "ort-fp32")
    assert code == 3
    assert_one_line_stderr(err, "transformers", "pip install 'seo-export[hf]'")


def test_texts_default_to_the_checkpoints_tokenizer():
    from seo_export.cli.validate import _hf_arguments

    args = argparse.Namespace(hf="ckpt", tokenizer=None, text=["a page"], text_file=None, model=None, config=None,
                              checkpoint=None, all=False, attention=None, positional=None, causal=False,
                              init="peaked")
    _hf_arguments(args)
    assert args.tokenizer == "ckpt"
    args.tokenizer = "other"
    _hf_arguments(args)
    assert args.tokenizer == "other"


def test_the_schema_knows_what_a_result_checks():
    from seo_export.parity.metrics import compare
    from seo_export.parity.report import make_input, make_variant, validate_result
    from seo_export.parity.tolerance import check_fp32

    a = np.zeros((1, 2, 3))
    result = validate_result(make_variant("standard", "learned"), "transformers", make_input(1, 2, "S=2"),
                             {"last_hidden_state": compare(a, a)}, check_fp32(a, a), check="conversion")
    assert result["check"] == "conversion"
    check_report(validate_report([result], environment=ENV))
    with pytest.raises(ValueError):
        validate_result(result["variant"], "ort-fp32", result["input"], result["outputs"], result["verdict"],
                        check="exported")
    result["check"] = "exported"
    with pytest.raises(ReportSchemaError, match="check"):
        check_report({**validate_report([], environment=ENV), "results": [result]})
