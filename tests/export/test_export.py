"""The graph contract of exported files."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from seo_export.errors import UsageError
from seo_export.export import export_onnx
from seo_export.export.inspect import config_from_onnx, describe
from tests.export.helpers import exported, padded_inputs, small_config, small_model

LOCAL = ("local", "relative", False)
SPARSE = ("sparse", "rotary", False)


def load(result):
    return onnx.load_model(str(result.path))


@pytest.mark.parametrize("variant", [LOCAL, SPARSE])
def test_inputs_outputs_are_symbolic_and_named(tmp_path_factory, variant):
    model = load(exported(tmp_path_factory, variant)[1])
    io = describe(model)
    assert [(v["name"], v["dtype"], v["shape"]) for v in io["inputs"]] == [
        ("input_ids", "int64", ["batch", "seq"]), ("attention_mask", "int64", ["batch", "seq"])]
    assert [(v["name"], v["shape"]) for v in io["outputs"]] == [
        ("last_hidden_state", ["batch", "seq", 32]), ("pooler_output", ["batch", 32])]


@pytest.mark.parametrize("variant,op,count,attrs", [
    (LOCAL, "seo::LocalWindowAttention", 2, {"window_left": 4, "window_right": 4}),
    (("local", "sinusoidal", True), "seo::LocalWindowAttention", 2, {"window_left": 7, "window_right": 0}),
    (SPARSE, "seo::LandmarkAttention", 2, {"num_landmarks": 4, "pinv_iterations": 6}),
])
def test_custom_nodes_carry_plugin_attributes_and_functions(tmp_path_factory, variant, op, count, attrs):
    model = load(exported(tmp_path_factory, variant)[1])
    info = describe(model)
    nodes = [n for n in info["custom_nodes"] if n["op"] == op]
    assert len(nodes) == count
    for node in nodes:
        assert node["attributes"]["plugin_namespace"] == "seo" and node["attributes"]["plugin_version"] == "1"
        assert node["attributes"]["scale"] == pytest.approx(8 ** -0.5)
        assert {k: node["attributes"][k] for k in attrs} == attrs
    assert any(f.startswith(op) for f in info["functions"])
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("variant", [LOCAL, SPARSE, ("relative", "relative", False)])
def test_shape_inference_gives_every_value_a_rank(tmp_path_factory, variant):
    model = onnx.shape_inference.infer_shapes(load(exported(tmp_path_factory, variant)[1]), strict_mode=True)
    known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    known.update({t.name: None for t in model.graph.initializer})
    for node in model.graph.node:
        for name in node.output:
            assert name in known, f"{node.op_type} output {name} has no inferred type"
            if known[name] is not None:
                assert known[name].type.tensor_type.HasField("shape"), f"{name} ({node.op_type}) has no rank"


def test_relative_attention_never_builds_an_s_s_headdim_tensor(tmp_path_factory):
    model = onnx.shape_inference.infer_shapes(load(exported(tmp_path_factory, ("relative", "sinusoidal", False))[1]))
    ranks = {len(v.type.tensor_type.shape.dim) for v in model.graph.value_info}
    assert max(ranks) <= 4, "an [B, H, S, S, D] or larger tensor appears in the graph"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_masks_use_where_not_added_large_negatives(tmp_path_factory, precision):
    model = load(exported(tmp_path_factory, ("standard", "relative", False), precision)[1])
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    constants.update({n.output[0]: onnx.numpy_helper.to_array(a.t) for n in model.graph.node
                      if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
    for node in model.graph.node:
        if node.op_type in ("Add", "Sub"):
            for name in node.input:
                values = constants.get(name)
                assert values is None or values.dtype.kind != "f" or not (values < -1e4).any(), node.name
    ops = [n.op_type for n in model.graph.node]
    assert "Where" in ops and "Softmax" in ops  # masks become FP32 penalty tables and row selects


def test_metadata_says_what_the_file_is(tmp_path_factory):
    model = load(exported(tmp_path_factory, LOCAL, "fp16")[1])
    meta = describe(model)["seo_export"]
    assert meta["precision"] == "fp16" and meta["version"]
    assert json.loads(meta["custom_ops"]) == {"seo::LandmarkAttention": 1, "seo::LocalWindowAttention": 1}
    assert config_from_onnx(model) == small_config(*LOCAL)


def test_same_inputs_give_byte_identical_files(tmp_path):
    a = export_onnx(small_model(LOCAL), tmp_path / "a.onnx")
    b = export_onnx(small_model(LOCAL), tmp_path / "b.onnx")
    assert a.sha256 == b.sha256
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_decomposed_has_no_custom_nodes_and_same_outputs(tmp_path_factory):
    _, custom = exported(tmp_path_factory, LOCAL)
    _, plain = exported(tmp_path_factory, LOCAL, decomposed=True)
    model = load(plain)
    assert not [n for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    assert not model.functions
    feeds = padded_inputs(3, 21)
    a = ort.InferenceSession(str(custom.path), providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(str(plain.path), providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("checker exploded")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(RuntimeError):
        export_onnx(small_model(LOCAL), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs,match", [
    ({"opset": 17}, "opset 17 is not supported"),
    ({"precision": "int8"}, "precision must be one of"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(UsageError, match=match):
        export_onnx(small_model(LOCAL), tmp_path / "m.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_opset_23_writes_standard_attention_as_the_attention_op(tmp_path, precision):
    import torch

    from tests.export.helpers import eager

    variant = ("standard", "rotary", True)
    model = small_model(variant)
    result = export_onnx(model, tmp_path / "m.onnx", precision=precision, opset=23)
    assert result.op_counts.get("Attention") == 2
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for seq in (1, 13):
        feeds = padded_inputs(3, seq)
        got = session.run(["last_hidden_state"], feeds)[0]
        want = eager(model, feeds)["last_hidden_state"]
        assert np.isfinite(got).all()
        if precision == "fp32":
            assert np.abs(got - want).max() <= 1e-4
        else:
            half = eager(model, feeds, torch.float16)["last_hidden_state"]
            assert np.abs(got - want).max() <= 2 * np.abs(half - want).max() + 1e-3


@pytest.mark.parametrize("variant,padding_mask,overload", [
    (("local", "relative", False), True, ""),  # real mask and bias
    (("local", "rotary", False), True, "no_bias"),  # the bias is the zero stand-in
    (("sparse", "learned", False), False, "no_mask_no_bias"),  # the mask is the all-true stand-in too
])
def test_stand_in_inputs_select_the_overload_that_skips_them(tmp_path, variant, padding_mask, overload):
    from dataclasses import replace

    from seo_export.models.build import build_model
    from tests.export.helpers import eager

    model = build_model(replace(small_config(*variant), use_padding_mask=padding_mask), seed=0)
    result = export_onnx(model, tmp_path / "m.onnx")
    proto = load(result)
    nodes = [n for n in proto.graph.node if n.domain == "seo"]
    assert nodes and all(len(n.input) == 5 and n.overload == overload for n in nodes)  # TensorRT's arity kept
    assert [f.overload for f in proto.functions] == [overload]
    feeds = padded_inputs(3, 13)
    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.abs(got - eager(model, feeds)["last_hidden_state"]).max() <= 1e-4


def test_default_opset_writes_gelu_as_one_op(tmp_path):
    default = load(export_onnx(small_model(LOCAL), tmp_path / "a.onnx"))
    assert {o.version for o in default.opset_import if o.domain == ""} == {20}
    ops = {n.op_type for n in default.graph.node}
    assert "Gelu" in ops and "Erf" not in ops
    older = {n.op_type for n in load(export_onnx(small_model(LOCAL), tmp_path / "b.onnx", opset=18)).graph.node}
    assert "Gelu" not in older and "Erf" in older  # opset 18 has no Gelu
