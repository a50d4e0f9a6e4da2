"""The graph contract of exported files."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

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
    # without a relative bias: the zero stand-in's overload, which has an op type of its own
    (("local", "sinusoidal", True), "seo::LocalWindowAttention_zero_bias", 2, {"window_left": 7, "window_right": 0}),
    (SPARSE, "seo::LandmarkAttention_zero_bias", 2, {"num_landmarks": 4, "pinv_iterations": 6}),
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


def penalty_problems(model: onnx.ModelProto) -> list[str]:
    """Every Softmax must take FP32 logits plus an FP32 mask penalty (a Where selecting float32's
    lowest): added in FP16, the penalty would be -65504 and the masked logits rounded with it."""
    model = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    problems, softmaxes = [], [n for n in model.graph.node if n.op_type == "Softmax"]
    for node in softmaxes:
        add = producers.get(node.input[0])
        if add is None or add.op_type != "Add":
            problems.append(f"{node.name}: input is not logits + penalty")
            continue
        selects = [producers[i] for i in add.input if i in producers and producers[i].op_type == "Where"]
        lowest = [v for s in selects for v in s.input[1:] if v in values and values[v].astype(np.float64).min() < -3e38]
        if not lowest:
            problems.append(f"{node.name}: no float32-lowest mask penalty feeds it")
        problems += [f"{node.name}: {name} is not float32" for name in add.input
                     if types.get(name) != onnx.TensorProto.FLOAT]
    return problems if softmaxes else ["no Softmax in the graph"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_mask_penalty_is_added_in_fp32(tmp_path_factory, precision):
    model = load(exported(tmp_path_factory, ("standard", "relative", False), precision)[1])
    assert penalty_problems(model) == []


def test_mask_penalty_check_sees_an_fp16_penalty(tmp_path, monkeypatch):
    """The check above, seen to fail: a softmax that works in the logits' FP16 adds an FP16 penalty."""
    from seo_export.ops import softmax

    def fp16_softmax(logits, allowed):
        lowest = torch.finfo(logits.dtype).min
        penalty = torch.where(allowed, torch.zeros((), dtype=logits.dtype), torch.full((), lowest, dtype=logits.dtype))
        return torch.softmax(logits + penalty, dim=-1)

    monkeypatch.setattr(softmax, "softmax_allowed", fp16_softmax)
    monkeypatch.setattr("seo_export.models.attention.dense.softmax_allowed", fp16_softmax)
    result = export_onnx(small_model(("standard", "relative", False)), tmp_path / "m.onnx", precision="fp16")
    assert penalty_problems(load(result))


@pytest.mark.parametrize("keep_in_fp32", [True, False])
def test_an_fp32_island_holds_the_true_fp32_weights(tmp_path, keep_in_fp32):
    """Not FP16-rounded weights cast back up; without the island (the control) none match exactly."""
    model = small_model(("standard", "sinusoidal", False))
    keep = ("layers.1.attention",) if keep_in_fp32 else ()
    proto = load(export_onnx(model, tmp_path / "m.onnx", precision="fp16", keep_fp32=keep))
    stored = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    block = model.get_submodule("layers.1.attention")
    for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
        weight = getattr(block, projection).weight.detach().numpy()
        exact = any(a.shape in (weight.shape, weight.T.shape) and (np.array_equal(a, weight) or
                                                                   np.array_equal(a, weight.T)) for a in stored)
        assert exact == keep_in_fp32, projection


def test_metadata_says_what_the_file_is(tmp_path_factory):
    model = load(exported(tmp_path_factory, LOCAL, "fp16")[1])
    meta = describe(model)["seo_export"]
    assert meta["precision"] == "fp16" and meta["version"]
    assert json.loads(meta["custom_ops"]) == {"seo::LandmarkAttention": 1, "seo::LocalWindowAttention": 1}
    assert config_from_onnx(model) == small_config(*LOCAL)


EXPORT_IN_A_FRESH_PROCESS = """
import sys
from seo_export.export import export_onnx
from tests.export.helpers import small_model
export_onnx(small_model(("local", "relative", False)), sys.argv[1])
"""


def test_exports_are_byte_identical_across_processes(tmp_path):
    """Two interpreters with different hash seeds and working directories write the same bytes,
    and the file names no source path (trace metadata would differ between checkouts)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    files = []
    for hash_seed in ("1", "2"):
        cwd = tmp_path / f"cwd{hash_seed}"
        cwd.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, "-c", EXPORT_IN_A_FRESH_PROCESS, str(cwd / "m.onnx")], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        files.append((cwd / "m.onnx").read_bytes())
    assert files[0] == files[1]
    for fragment in (str(root).encode(), b".py:", b"site-packages"):
        assert fragment not in files[0], f"the file carries {fragment!r}"


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
    ({"precision": "int4"}, "precision must be one of"),
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
    (("local", "rotary", False), True, "zero_bias"),  # the bias is the zero stand-in
    (("sparse", "learned", False), False, "zero_bias"),  # the all-true mask stand-in is read as a mask
])
def test_stand_in_inputs_select_the_overload_that_skips_them(tmp_path, variant, padding_mask, overload):
    """Skips the 5-D bias add, yet reads all five inputs: tools prune unread function inputs."""
    from dataclasses import replace

    from seo_export.models.build import build_model
    from tests.export.helpers import eager

    model = build_model(replace(small_config(*variant), use_padding_mask=padding_mask), seed=0)
    result = export_onnx(model, tmp_path / "m.onnx")
    proto = load(result)
    nodes = [n for n in proto.graph.node if n.domain == "seo"]
    assert nodes and all(len(n.input) == 5 and n.overload == overload for n in nodes)  # TensorRT's arity kept
    assert [f.overload for f in proto.functions] == [overload]
    read = {name for node in proto.functions[0].node for name in node.input}
    assert read >= {"q", "k", "v", "key_mask", "rel_bias"}
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
