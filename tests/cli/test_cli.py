"""The console script as users run it: exit codes and one-line errors, no tracebacks."""

import json

import pytest

from tests.cli.helpers import assert_one_line_error, seo_export


def test_help_and_version():
    from seo_export.cli.main import COMMANDS

    shown = seo_export("--help")
    assert shown.returncode == 0
    assert all(command in shown.stdout for command in COMMANDS)
    result = seo_export("--version")
    assert result.returncode == 0 and result.stdout.startswith("seo-export ")


def test_info_json_reports_versions():
    result = seo_export("info", "--json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["packages"]["torch"] and info["packages"]["onnx"]
    assert info["cuda_available"] in (True, False)


def test_forward_smoke_runs():
    result = seo_export("forward", "--attention", "local", "--seq-len", "40", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert "last_hidden_state" in result.stdout


@pytest.mark.parametrize("content,fragment", [
    (None, "does not exist"),
    ("{oops", "not valid JSON"),
    ('{"hidden_size": 10, "num_heads": 3}', "must be divisible by num_heads"),
    ('{"attention": "local"}', "unknown config key 'attention'"),
])
def test_bad_config_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(seo_export("forward", "--config", str(path)), fragment)


def test_causal_sparse_is_refused_with_reason():
    assert_one_line_error(seo_export("forward", "--attention", "sparse", "--causal"), "not defined")


def test_bad_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert_one_line_error(seo_export("forward", "--checkpoint", str(bad)), "cannot read checkpoint")


def test_checkpoint_that_does_not_fit(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"pooler.weight": torch.zeros(3, 3)}, str(path))
    assert_one_line_error(seo_export("forward", "--checkpoint", str(path)), "does not fit the config")


def test_pickled_checkpoints_are_not_unpickled(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = tmp_path / "w.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    result = seo_export("forward", "--checkpoint", str(path))
    assert "unpickled!" not in result.stdout
    assert_one_line_error(result, "cannot read checkpoint")


def test_export_cli_opsets_match_the_exporter():
    # The CLI repeats them so that --help need not import torch; the exporter is what checks them.
    from seo_export.cli import export as cli_export
    from seo_export.export import exporter

    assert (cli_export.MIN_OPSET, cli_export.MAX_OPSET, cli_export.DEFAULT_OPSET) == (
        exporter.MIN_OPSET, exporter.MAX_OPSET, exporter.DEFAULT_OPSET)


def test_export_and_inspect(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 32, "num_layers": 1, "num_heads": 4, "vocab_size": 50,
                                  "intermediate_size": 64, "attention_window_size": 4}))
    out = tmp_path / "model.onnx"
    result = seo_export("export", "--config", str(config), "--attention", "local", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "sha256" in result.stderr
    shown = seo_export("inspect", str(out), "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["seo_export"]["config"]["attention_type"] == "local"
    # One local-window node, under its overload's op type (seo_plugins/op_names.py).
    assert sum(n for op, n in info["op_counts"].items() if op.startswith("seo::LocalWindowAttention")) == 1


@pytest.mark.parametrize("args,fragment", [
    (["--opset", "12"], "opset 12 is not supported"),
    (["-o", "/nonexistent-dir/m.onnx"], "does not exist"),
])
def test_export_errors_are_one_line_and_leave_no_file(tmp_path, args, fragment):
    full = ["export", "--config", str(tmp_path / "c.json")] + args
    (tmp_path / "c.json").write_text(json.dumps({"hidden_size": 32, "num_layers": 1, "num_heads": 4}))
    if "-o" not in args:
        full += ["-o", str(tmp_path / "m.onnx")]
    assert_one_line_error(seo_export(*full), fragment)
    assert not (tmp_path / "m.onnx").exists()


def test_inspect_refuses_a_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    assert_one_line_error(seo_export("inspect", str(bad)), "is not an ONNX model")


def fp32_matmuls(path) -> int:
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load_model(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    return sum(types.get(n.output[0]) == onnx.TensorProto.FLOAT for n in model.graph.node if n.op_type == "MatMul")


def test_keep_fp32_island_exports_and_names_bad_modules(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 50,
                                  "intermediate_size": 64}))
    ok = seo_export("export", "--config", str(config), "--precision", "fp16", "--keep-fp32", "layers.1.attention",
                    "-o", str(tmp_path / "m.onnx"))
    assert ok.returncode == 0, ok.stderr
    info = json.loads(seo_export("inspect", str(tmp_path / "m.onnx"), "--json").stdout)
    assert info["seo_export"]["keep_fp32"] == '["layers.1.attention"]'
    # Not only the metadata: the island's projections and attention products compute in FP32.
    plain = seo_export("export", "--config", str(config), "--precision", "fp16", "-o", str(tmp_path / "p.onnx"))
    assert plain.returncode == 0, plain.stderr
    assert fp32_matmuls(tmp_path / "p.onnx") == 0 and fp32_matmuls(tmp_path / "m.onnx") >= 6
    bad = seo_export("export", "--config", str(config), "--precision", "fp16", "--keep-fp32", "layers.9.mlp",
                     "-o", str(tmp_path / "n.onnx"))
    assert_one_line_error(bad, "the model has no such module")
    assert not (tmp_path / "n.onnx").exists()
