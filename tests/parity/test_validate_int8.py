"""validate and bench on INT8 graphs: an int8 file is judged by the INT8 rule on ort-int8 alone, a
wrong weight scale fails it and the terminal says where, and bench records the rule's figures."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli.helpers import seo_export

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 60, "intermediate_size": 64,
        "dropout_rate": 0.0, "attention_dropout": 0.0, "attention_window_size": 6, "attention_type": "local",
        "positional_encoding_type": "learned", "positional_encoding_max_len": 64, "num_labels": 3,
        "classifier_activation": "tanh"}


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    directory = tmp_path_factory.mktemp("int8")
    (directory / "c.json").write_text(json.dumps(TINY))
    result = seo_export("export", "--config", directory / "c.json", "--init", "peaked", "--precision", "int8",
                        "-o", directory / "m.onnx")
    assert result.returncode == 0, result.stderr
    return directory / "m.onnx"


def scaled_weight(source, target, factor: float, layer: int = 1) -> None:
    """The weight scale of ``layer``'s attention output projection (the INT8 MatMul nearest upstream of
    ``layers.N.attention.output``), multiplied: a broken quantization."""
    model = onnx.load_model(str(source))
    producer = {out: node for node in model.graph.node for out in node.output}
    frontier = [f"layers.{layer}.attention.output"]
    while frontier:  # breadth-first, so the nearest MatMulInteger is found first
        node = producer.get(frontier.pop(0))
        if node is None:
            continue
        if node.op_type == "MatMulInteger":
            break
        frontier += list(node.input)
    name = node.input[1].removesuffix("_quantized") + "_scale"
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(factor), name))
    onnx.save_model(model, str(target))


def test_an_int8_file_is_judged_by_the_int8_rule(int8_file, tmp_path):
    result = seo_export("validate", "--model", int8_file, "--max-len", 20, "--report-dir", tmp_path / "r")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {r["backend"] for r in report["results"]} == {"ort-int8"}
    assert all(r["verdict"]["rule"].startswith("int8-") for r in report["results"])
    assert all(r["timings"]["eager_precision"] == "fp32" for r in report["results"])


def test_a_wrong_weight_scale_fails_and_is_located(int8_file, tmp_path):
    broken = tmp_path / "broken.onnx"
    scaled_weight(int8_file, broken, 4.0)
    result = seo_export("validate", "--model", broken, "--max-len", 20, "--report-dir", tmp_path / "r")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    failed = [r for r in report["results"] if not r["verdict"]["passed"]]
    assert failed and all(r["break"]["module"] == "layers.1.attention" for r in failed)
    assert "layers.1.attention" in result.stderr and "int8" in result.stderr
    # The simulated INT8 of the same model passes, so the terminal blames the file, not INT8.
    assert all("the file, not INT8, loses the accuracy" in r["break"]["note"] for r in failed)
    assert "the file, not INT8, loses the accuracy" in result.stderr


def test_a_model_int8_itself_cannot_serve_is_told_apart_from_a_broken_file(tmp_path):
    """The sweep's landmark model (16 landmarks, hidden 128) loses accuracy in INT8 near S = 2 x landmarks:
    a healthy file fails the rule there, and the INT8 simulation fails the same way, so validate says so."""
    result = seo_export("validate", "--attention", "sparse", "--positional", "learned", "--backends", "ort-int8",
                        "--max-len", 40, "--report-dir", tmp_path / "r")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [r for r in json.loads((tmp_path / "r" / "report.json").read_text())["results"]
              if not r["verdict"]["passed"]]
    assert failed and all("INT8 itself loses this accuracy on this model" in r["break"]["note"] for r in failed)
    assert "serve it with ort-fp32 or ort-fp16" in result.stderr


def test_an_int8_file_is_not_given_to_another_backend(int8_file):
    result = seo_export("validate", "--model", int8_file, "--backends", "ort-fp32")
    assert result.returncode == 2 and "--backends ort-int8" in result.stderr


def test_bench_records_the_int8_figures(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(TINY))
    result = seo_export("bench", "--config", tmp_path / "c.json", "--backends", "torch,ort-int8", "--batch", 2,
                        "--seq", 16, "--iterations", 2, "--no-memory", "--report-dir", tmp_path / "b")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {r["backend"]: r for r in json.loads((tmp_path / "b" / "report.json").read_text())["results"]}
    assert rows["ort-int8"]["precision"] == "int8" and "accuracy" not in rows["torch"]
    figures = rows["ort-int8"]["accuracy"]
    assert 0.99 < figures["min_token_cosine"] <= 1.0 and figures["top1_agreement"] is not None
    assert "INT8 accuracy" in (tmp_path / "b" / "report.md").read_text()
