"""INT8 for CPU: ONNX Runtime's dynamic quantization of the linear layers, and nothing else."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from seo_export.backends.tensorrt.builder import check_build_inputs
from seo_export.backends.tensorrt.profiles import parse_profile
from seo_export.cli.main import main
from seo_export.errors import UsageError
from seo_export.export import export_onnx
from seo_export.export.exporter import op_counts
from seo_export.export.inspect import export_options, metadata_value, stored_metadata
from seo_export.export.quantize import (
    QuantizationSettings,
    is_dynamic_int8,
    linear_layer_nodes,
    quantization_problems,
    quantize_file,
    quantize_model,
)
from tests.cli.helpers import assert_one_line_stderr
from tests.export.helpers import exported, padded_inputs, small_config, small_model

LOCAL = ("local", "relative", False)
RELATIVE = ("relative", "sinusoidal", False)
LINEAR_LAYERS = 2 * 6 + 1  # q, k, v, out, intermediate, output per layer, and the pooler
KEPT_FP32 = ("Softmax", "LayerNormalization", "Where", "Equal", "Not", "Gelu")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """variant -> (FP32 export, its INT8 quantization), quantized in process from the cached FP32 export."""
    cache = {}

    def get(variant, settings=None):
        key = (variant, settings)
        if key not in cache:
            fp32 = onnx.load(str(exported(tmp_path_factory, variant)[1].path))
            cache[key] = fp32, quantize_model(fp32, settings)
        return cache[key]

    return get


def float_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input,
                                                             *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


@pytest.mark.parametrize("variant", [LOCAL, RELATIVE])
def test_only_the_linear_layers_are_quantized(graphs, variant):
    fp32, int8 = graphs(variant)
    counts = op_counts(int8)
    assert counts["MatMulInteger"] == LINEAR_LAYERS
    assert counts["DynamicQuantizeLinear"] >= 1 and "Gemm" not in counts
    # Every other node is the FP32 export's own: seo nodes, Softmax, LayerNorm, mask logic, act x act MatMuls.
    assert quantization_problems(int8, fp32, linear_layer_nodes(fp32)) == []
    fp32_nodes = {tuple(n.output): n for n in fp32.graph.node}
    for node in int8.graph.node:
        if node.op_type in KEPT_FP32 or node.domain == "seo":
            assert fp32_nodes[tuple(node.output)] == node
    types = float_types(int8)
    kept = [n for n in int8.graph.node if n.op_type in ("Softmax", "LayerNormalization") or n.domain == "seo"]
    assert kept
    for node in kept:
        assert types[node.input[0]] == onnx.TensorProto.FLOAT and types[node.output[0]] == onnx.TensorProto.FLOAT


def test_activation_matmuls_and_relative_tables_stay_fp32(graphs):
    """Q.K^T and P.V multiply two activations (4 MatMuls in 2 layers); relative attention's table MatMuls
    (4 more) have a constant B but are attention math: all stay float MatMuls."""
    fp32, int8 = graphs(RELATIVE)
    assert op_counts(fp32)["MatMul"] == LINEAR_LAYERS - 1 + 8 and op_counts(int8)["MatMul"] == 8
    types = float_types(int8)
    assert all(types[i] == onnx.TensorProto.FLOAT for n in int8.graph.node if n.op_type == "MatMul" for i in n.input)


def test_seo_functions_opset_and_metadata_survive(graphs):
    fp32, int8 = graphs(LOCAL)
    assert [f.SerializeToString() for f in int8.functions] == [f.SerializeToString() for f in fp32.functions]
    assert {o.domain: o.version for o in int8.opset_import}["seo"] == 1
    assert sum(n.domain == "seo" for n in int8.graph.node) == 2
    before = {p.key: p.value for p in fp32.metadata_props}
    after = {p.key: p.value for p in int8.metadata_props}
    assert {k: v for k, v in after.items() if k in before and k != "seo_export.precision"} == {
        k: v for k, v in before.items() if k != "seo_export.precision"}
    assert metadata_value(int8, "precision") == "int8" and export_options(int8)["precision"] == "int8"
    record = stored_metadata(int8, "quantization")
    assert record["per_channel"] is True and record["weight_type"] == "QInt8"
    assert record["op_types"] == ["MatMul", "Gemm"] and record["onnxruntime"] == ort.__version__
    assert record["quantized_nodes"] == LINEAR_LAYERS and record["mode"] == "dynamic"
    onnx.checker.check_model(int8, full_check=True)


def test_settings_are_applied_and_recorded(graphs):
    _, int8 = graphs(LOCAL, QuantizationSettings(per_channel=False, weight_type="QUInt8"))
    record = stored_metadata(int8, "quantization")
    assert record["per_channel"] is False and record["weight_type"] == "QUInt8"
    weights = [t for t in int8.graph.initializer if t.name.endswith("_quantized")]
    assert weights and all(t.data_type == onnx.TensorProto.UINT8 for t in weights)
    scales = [t for t in int8.graph.initializer if t.name.endswith("_scale")]
    assert all(len(t.dims) == 0 or list(t.dims) == [1] for t in scales)  # one scale per tensor


@pytest.mark.parametrize("kwargs, fragment", [
    ({"io_dtype": "fp16"}, "--io-dtype fp16 does not apply"),
    ({"keep_fp32": ("layers.0.attention",)}, "--keep-fp32 only applies to --precision fp16"),
])
def test_int8_refuses_options_that_make_no_sense(tmp_path, kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        export_onnx(small_model(LOCAL), tmp_path / "m.onnx", precision="int8", **kwargs)
    assert not list(tmp_path.iterdir())


def test_quantization_settings_need_int8_and_valid_values(tmp_path):
    with pytest.raises(UsageError, match="only to --precision int8"):
        export_onnx(small_model(LOCAL), tmp_path / "m.onnx", quantization=QuantizationSettings())
    with pytest.raises(UsageError, match="weight type"):
        QuantizationSettings(weight_type="int4")
    with pytest.raises(UsageError, match="op types"):
        QuantizationSettings(op_types=("Conv",))


def test_only_fp32_files_are_quantized(graphs):
    _, int8 = graphs(LOCAL)
    with pytest.raises(UsageError, match="starts from an FP32 export; this file is int8"):
        quantize_model(int8)
    assert is_dynamic_int8(int8) and not is_dynamic_int8(graphs(LOCAL)[0])


def test_tensorrt_build_refuses_int8_in_one_line(tmp_path, graphs):
    _, int8 = graphs(LOCAL)
    onnx.save(int8, str(tmp_path / "m.onnx"))
    with pytest.raises(UsageError, match="TensorRT takes explicit Q/DQ quantization, not "
                                         "DynamicQuantizeLinear/MatMulInteger.*--precision fp16") as info:
        check_build_inputs(tmp_path / "m.onnx", tmp_path / "m.engine", [parse_profile("batch=1:1:2,seq=1:8:16")])
    assert "\n" not in str(info.value)


def test_cli_export_int8_and_refusals(tmp_path, capsys):
    config = tmp_path.parent / f"{tmp_path.name}-config.json"
    config.write_text(json.dumps({**small_config(*LOCAL).to_dict(), "num_layers": 1}))
    common = ["export", "--config", str(config), "--init", "peaked"]
    for extra, fragment in (
        (["--precision", "fp32", "--per-tensor"], "--per-tensor applies only to --precision int8"),
        (["--precision", "fp16", "--weight-type", "QUInt8"], "--weight-type applies only to --precision int8"),
        (["--precision", "int8", "--io-dtype", "fp16"], "--io-dtype fp16 does not apply"),
        (["--precision", "int8", "--keep-fp32", "layers.0.attention"], "--keep-fp32 applies only to --precision fp16"),
    ):
        assert main(common + extra + ["-o", str(tmp_path / "bad.onnx")]) == 2
        assert_one_line_stderr(capsys.readouterr().err, fragment)
    assert not list(tmp_path.iterdir())
    path = tmp_path / "m.onnx"
    assert main(common + ["--precision", "int8", "--per-tensor", "-o", str(path)]) == 0
    assert "7 INT8 linear layers" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # written whole, nothing left beside it
    int8 = onnx.load(str(path))
    record = stored_metadata(int8, "quantization")
    assert record["per_channel"] is False and record["weight_type"] == "QInt8"
    assert metadata_value(int8, "precision") == "int8" and op_counts(int8)["MatMulInteger"] == 7
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert all(np.isfinite(o).all() for o in session.run(None, padded_inputs(3, 13)))
    assert main(["run", str(path), "--batch", "2", "--seq-len", "8", "--iterations", "1", "--warmup", "0"]) == 0
    assert "on ort, batch 2, seq 8" in capsys.readouterr().out
    assert main(["build", str(path), "-o", str(tmp_path / "m.engine"), "--profile", "batch=1:1:2,seq=1:8:16"]) == 2
    assert_one_line_stderr(capsys.readouterr().err, "not DynamicQuantizeLinear/MatMulInteger", "--precision fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_linear_layers_are_found_by_shape_and_rank(graphs):
    fp32, _ = graphs(RELATIVE)
    names = linear_layer_nodes(fp32)
    nodes = {n.name: n for n in fp32.graph.node}
    weights = {t.name: tuple(t.dims) for t in fp32.graph.initializer}
    assert len(names) == LINEAR_LAYERS
    assert {weights[nodes[n].input[1]] for n in names} == {(32, 32), (32, 64), (64, 32)}
    config = json.loads(metadata_value(fp32, "config"))
    assert config["hidden_size"] == 32 and config == small_config(*RELATIVE).to_dict()


def test_quantize_file_reuses_an_fp32_export(tmp_path_factory, tmp_path):
    source = exported(tmp_path_factory, LOCAL)[1].path
    counts = quantize_file(source, tmp_path / "int8.onnx")
    assert counts["MatMulInteger"] == LINEAR_LAYERS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]
    assert metadata_value(onnx.load(str(tmp_path / "int8.onnx")), "precision") == "int8"
    with pytest.raises(UsageError, match="starts from an FP32 export"):
        quantize_file(tmp_path / "int8.onnx", tmp_path / "again.onnx")
    with pytest.raises(UsageError, match="is the FP32 input"):
        quantize_file(source, source)
