"""The seo FunctionProto bodies, run by ONNX Runtime (no custom-op library) against seo_export.ops.

Every model here is built by hand with onnx.helper: seo nodes plus the model-local functions,
so what is tested is the function bodies alone, not the exporter.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.checker
import onnx.helper as oh
import onnx.inliner
import onnx.shape_inference
import onnxruntime as ort
import pytest
import torch

from seo_export.export.functions import (
    DOMAIN,
    LANDMARK,
    LOCAL_WINDOW,
    OP_VERSION,
    ZERO_BIAS,
    all_function_protos,
    base_op,
    function_proto,
    op_type_for,
    overload_for,
)
from seo_export.ops import landmark_attention_reference, local_window_attention_reference
from tests.export.helpers import set_body_constant
from tests.reference import prefix_mask

FLOAT, FLOAT16, BFLOAT16, BOOL = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                                  onnx.TensorProto.BOOL)
PLUGIN = {"plugin_namespace": "seo", "plugin_version": "1"}
PRESENCE = [(True, True), (True, False), (False, True), (False, False)]
# float32 inputs: the body computes in float32 like the reference; only summation order differs.
ATOL = 1e-5


# --------------------------------------------------------------------------- model building
def seo_node(op_type, attrs, has_mask, has_bias, out, q="q", k="k", v="v", mask="key_mask", bias="rel_bias",
             overload=None):
    """An seo node with ONNX's optional-input convention: "" for a middle gap, trailing absences dropped;
    its op type names its overload (``overload_for`` unless given)."""
    inputs = [q, k, v, mask if has_mask else "", bias if has_bias else ""]
    while inputs[-1] == "":
        inputs.pop()
    overload = overload_for(has_mask, has_bias) if overload is None else overload
    node = oh.make_node(op_type_for(op_type, overload), inputs, [out], domain=DOMAIN, **attrs, **PLUGIN)
    node.overload = overload
    return node


def build_model(nodes, elem=FLOAT, opset=18, before=(), after=(), inputs=None, outputs=None):
    """One graph over inputs q, k, v [B, H, S, D], key_mask [B, S], rel_bias [H, W] (symbolic dims)."""
    used = {name for n in [*before, *nodes, *after] for name in n.input}
    if inputs is None:
        inputs = [oh.make_tensor_value_info(x, elem, ["B", "H", "S", "D"]) for x in "qkv"]
        if "key_mask" in used:
            inputs.append(oh.make_tensor_value_info("key_mask", BOOL, ["B", "S"]))
        if "rel_bias" in used:
            inputs.append(oh.make_tensor_value_info("rel_bias", elem, ["H", "W"]))
    if outputs is None:
        outputs = [oh.make_tensor_value_info(n.output[0], elem, ["B", "H", "S", "D"]) for n in nodes]
    variants = sorted({(base_op(n.op_type), n.overload) for n in nodes})
    graph = oh.make_graph([*before, *nodes, *after], "seo_functions_test", inputs, outputs)
    model = oh.make_model(
        graph,
        opset_imports=[oh.make_opsetid("", opset), oh.make_opsetid(DOMAIN, OP_VERSION)],
        functions=[function_proto(op, ov, opset) for op, ov in variants],
        ir_version=10,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def feeds(q, k, v, mask=None, bias=None):
    out = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()}
    if mask is not None:
        out["key_mask"] = mask.numpy()
    if bias is not None:
        out["rel_bias"] = bias.numpy()
    return out


def reference(op_type, attrs, q, k, v, mask=None, bias=None):
    if op_type == LOCAL_WINDOW:
        return local_window_attention_reference(q, k, v, attrs["window_left"], attrs["window_right"], mask, bias,
                                                attrs["scale"])
    return landmark_attention_reference(q, k, v, attrs["num_landmarks"], attrs["pinv_iterations"], mask, bias,
                                        attrs["scale"])


def inputs_for(batch, seq, heads=2, dim=8, bias_k=5, lengths=None):
    q, k, v = (torch.randn(batch, heads, seq, dim) for _ in range(3))
    if lengths is None:  # full, about half padded, fully padded
        lengths = [seq, max(seq // 2, 1), 0][:batch]
    mask = prefix_mask(seq, lengths)
    bias = torch.randn(heads, 2 * bias_k + 1)
    return q, k, v, mask, bias


def all_overloads_model(op_type, attrs, elem=FLOAT, opset=18):
    """One model holding the op once per optional-input pattern (all four overloads), outputs out_0..3."""
    nodes = [seo_node(op_type, attrs, m, b, f"out_{i}") for i, (m, b) in enumerate(PRESENCE)]
    return build_model(nodes, elem=elem, opset=opset)


def check_all_overloads(op_type, attrs, seq, atol, rtol=0.0, dim=8):
    sess = session(all_overloads_model(op_type, attrs))
    q, k, v, mask, bias = inputs_for(3, seq, dim=dim)
    got = sess.run(None, feeds(q, k, v, mask, bias))
    for (has_mask, has_bias), out in zip(PRESENCE, got):
        expected = reference(op_type, attrs, q, k, v, mask if has_mask else None, bias if has_bias else None)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, expected.numpy(), atol=atol, rtol=rtol,
                                   err_msg=f"{op_type} {attrs} S={seq} overload={overload_for(has_mask, has_bias)!r}")
        if has_mask:
            assert (out[2] == 0).all(), "a fully padded sample has no admissible key: exactly zeros"


# --------------------------------------------------------------------------- API
def test_overload_names():
    assert overload_for(True, True) == ""
    names = {overload_for(m, b) for m, b in PRESENCE}
    assert names == {"", "no_bias", "no_mask", "no_mask_no_bias"}
    assert overload_for(True, True, zero_bias=True) == ZERO_BIAS
    assert overload_for(False, True, zero_bias=True) == "no_mask"  # without a mask the full body is exact too


@pytest.mark.parametrize("opset", [18, 21])
def test_protos_declare_the_node_contract(opset):
    protos = all_function_protos(opset)
    assert sorted((p.name, p.overload) for p in protos) == sorted(
        (op_type_for(op, name), name) for op in (LOCAL_WINDOW, LANDMARK)
        for name in [*(overload_for(m, b) for m, b in PRESENCE), ZERO_BIAS])
    for proto in protos:
        assert proto.domain == DOMAIN
        assert list(proto.input) == ["q", "k", "v", "key_mask", "rel_bias"]
        assert list(proto.output) == ["out"]
        assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
        assert {n.domain for n in proto.node} == {""}, "standard ONNX ops only"
        expected = ["window_left", "window_right"] if base_op(proto.name) == LOCAL_WINDOW else ["num_landmarks",
                                                                                                "pinv_iterations"]
        assert list(proto.attribute) == expected + ["scale", "plugin_namespace", "plugin_version"]


def test_every_overload_has_a_name_of_its_own():
    # onnx-tensorrt keys model-local functions by name alone and keeps the first one it meets
    # (ModelImporter.cpp, importLocalFunctions), so overloads sharing a name would all run one body.
    protos = all_function_protos(18)
    by_name = {}
    for proto in protos:
        by_name.setdefault(proto.name, proto)
    assert len(by_name) == len(protos)
    assert function_proto(LOCAL_WINDOW, "", 18).name == LOCAL_WINDOW, "the default keeps the plugin's name"
    assert function_proto(LANDMARK, ZERO_BIAS, 18).name == "LandmarkAttention_zero_bias"
    assert {base_op(p.name) for p in protos} == {LOCAL_WINDOW, LANDMARK} and base_op("Attention") is None


def test_a_model_with_two_overloads_of_one_op_runs_each_body_when_keyed_by_name():
    """Two local-window nodes, one with and one without rel_bias, parsed the way onnx-tensorrt does
    without the plugins: each node's op type finds its own body by name, and ONNX Runtime agrees."""
    attrs = {"window_left": 2, "window_right": 2, "scale": 0.5}
    nodes = [seo_node(LOCAL_WINDOW, attrs, True, True, "a"), seo_node(LOCAL_WINDOW, attrs, True, False, "b")]
    model = build_model(nodes)
    first_by_name = {}
    for function in model.functions:
        first_by_name.setdefault(function.name, function)
    assert [first_by_name[n.op_type].overload for n in nodes] == ["", "no_bias"]
    q, k, v, mask, bias = inputs_for(2, 9)
    got = session(model).run(None, feeds(q, k, v, mask, bias))
    for out, with_bias in zip(got, (bias, None)):
        want = reference(LOCAL_WINDOW, attrs, q, k, v, mask, with_bias).numpy()
        np.testing.assert_allclose(out, want, atol=ATOL)


def test_protos_are_fresh_and_deterministic():
    a = function_proto(LOCAL_WINDOW, "", 18)
    a.name = "changed"
    b = function_proto(LOCAL_WINDOW, "", 18)
    assert b.name == LOCAL_WINDOW
    assert b.SerializeToString(deterministic=True) == function_proto(LOCAL_WINDOW, "", 18).SerializeToString(
        deterministic=True)


@pytest.mark.parametrize("args,match", [
    (("Attention", "", 18), "unknown seo op"),
    ((LOCAL_WINDOW, "mask", 18), "overload"),
    ((LANDMARK, "", 17), "opset"),
])
def test_bad_requests_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        function_proto(*args)


# --------------------------------------------------------------------------- local window
# (seq, window_left, window_right): S = 1, S < window, odd lengths not a multiple of the block,
# causal (right = 0), asymmetric, width 1, and a window past the 64-row block cap.
LOCAL_CASES = [(1, 4, 4), (5, 8, 8), (37, 4, 4), (37, 7, 0), (70, 16, 16), (130, 3, 5), (100, 0, 0),
               (150, 40, 40)]


@pytest.mark.parametrize("seq,left,right", LOCAL_CASES)
def test_local_window_matches_reference(seq, left, right):
    attrs = {"window_left": left, "window_right": right, "scale": 0.3}
    check_all_overloads(LOCAL_WINDOW, attrs, seq, atol=ATOL)


# --------------------------------------------------------------------------- landmark
# (seq, landmarks, iterations): S = 1, S < L, empty trailing segments, odd lengths not a multiple
# of the segment, S a multiple of L, no pinv iteration, many landmarks.
LANDMARK_CASES = [(1, 4, 6), (3, 8, 6), (5, 4, 6), (37, 8, 6), (64, 8, 6), (50, 7, 0), (100, 16, 3),
                  (129, 32, 6)]


@pytest.mark.parametrize("seq,landmarks,iterations", LANDMARK_CASES)
def test_landmark_matches_reference(seq, landmarks, iterations):
    attrs = {"num_landmarks": landmarks, "pinv_iterations": iterations, "scale": 0.3}
    # The Newton-Schulz pseudo-inverse multiplies float32 matmul rounding differences by about
    # cond(A2), and the output is not unit-scale (pinv(A2) can be large), so the bound is relative
    # as well as absolute (observed worst: 2e-5 on an output of magnitude 7).
    check_all_overloads(LANDMARK, attrs, seq, atol=ATOL, rtol=1e-5)


# --------------------------------------------------------------------------- both ops
OPS = [
    (LOCAL_WINDOW, {"window_left": 6, "window_right": 3, "scale": 0.25}),
    (LANDMARK, {"num_landmarks": 6, "pinv_iterations": 6, "scale": 0.25}),
]


@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_symbolic_batch_and_length(op_type, attrs):
    """One file, several (batch, length) pairs: nothing in the body is fixed at build time."""
    sess = session(build_model([seo_node(op_type, attrs, True, True, "out")]))
    for batch, seq in [(1, 1), (2, 17), (3, 100), (1, 257)]:
        q, k, v, mask, bias = inputs_for(batch, seq, lengths=[seq, seq - seq // 3, 0][:batch])
        (out,) = sess.run(None, feeds(q, k, v, mask, bias))
        assert out.shape == (batch, 2, seq, 8)
        np.testing.assert_allclose(out, reference(op_type, attrs, q, k, v, mask, bias).numpy(), atol=ATOL,
                                   rtol=1e-5 if op_type == LANDMARK else 0)


@pytest.mark.parametrize("op_type,variants", [
    (LOCAL_WINDOW, [{"window_left": 2, "window_right": 2, "scale": 0.35},
                    {"window_left": 0, "window_right": 2, "scale": 0.35},
                    {"window_left": 20, "window_right": 0, "scale": 1.5}]),
    (LANDMARK, [{"num_landmarks": 4, "pinv_iterations": 6, "scale": 0.35},
                {"num_landmarks": 9, "pinv_iterations": 6, "scale": 0.35},
                {"num_landmarks": 4, "pinv_iterations": 1, "scale": 1.5}]),
], ids=["local", "landmark"])
def test_one_function_serves_every_attribute_value(op_type, variants):
    """Several nodes with different attributes share one FunctionProto, and ORT honours each node's values."""
    nodes = [seo_node(op_type, attrs, True, False, f"out_{i}") for i, attrs in enumerate(variants)]
    model = build_model(nodes)
    assert len(model.functions) == 1
    q, k, v, mask, _ = inputs_for(2, 45)
    outs = session(model).run(None, feeds(q, k, v, mask))
    for attrs, out in zip(variants, outs):
        np.testing.assert_allclose(out, reference(op_type, attrs, q, k, v, mask).numpy(), atol=ATOL,
                                   rtol=1e-5 if op_type == LANDMARK else 0)
    # Each attribute change (window_left / num_landmarks, then the iteration count and scale) moves the output.
    assert np.abs(outs[0] - outs[1]).max() > 1e-2
    assert np.abs(outs[0] - outs[2]).max() > 1e-2


def test_changing_window_left_in_the_file_changes_the_ort_output():
    attrs = {"window_left": 5, "window_right": 1, "scale": 0.3}
    model = build_model([seo_node(LOCAL_WINDOW, attrs, False, False, "out")])
    q, k, v, _, _ = inputs_for(1, 30)
    before = session(model).run(None, feeds(q, k, v))[0]
    for attr in model.graph.node[0].attribute:
        if attr.name == "window_left":
            attr.i = 0
    after = session(model).run(None, feeds(q, k, v))[0]
    assert np.abs(before - after).max() > 1e-2
    np.testing.assert_allclose(after, local_window_attention_reference(q, k, v, 0, 1, scale=0.3).numpy(), atol=ATOL)


@pytest.mark.parametrize("elem", [FLOAT, FLOAT16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_zero_bias_reads_the_bias_for_its_type_only(op_type, attrs, elem):
    """The exporter's zero [H, 1] stand-in: same values as no bias (any per-head constant is, as softmax
    ignores a row shift), the output in the bias's type, and every formal input read."""
    node = seo_node(op_type, attrs, True, True, "out", overload=ZERO_BIAS)
    model = build_model([node], elem=elem)
    assert {i for n in model.functions[0].node for i in n.input} >= {"q", "k", "v", "key_mask", "rel_bias"}
    q, k, v, mask, _ = inputs_for(3, 29)
    shift = torch.randn(2, 1) * 5
    if elem == FLOAT16:
        q, k, v, shift = q.half(), k.half(), v.half(), shift.half()
    (out,) = session(model).run(None, feeds(q, k, v, mask, shift))
    assert out.dtype == (np.float16 if elem == FLOAT16 else np.float32)
    expected = reference(op_type, attrs, q.float(), k.float(), v.float(), mask).numpy()
    atol = 1e-5 if elem == FLOAT else np.spacing(np.float16(np.abs(expected).max())) + 1e-5
    np.testing.assert_allclose(out.astype(np.float32), expected, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_large_logits_and_empty_rows_stay_finite(op_type, attrs):
    """Huge logits on masked keys or in fully padded rows must not leak inf/NaN through the mask."""
    sess = session(all_overloads_model(op_type, attrs))
    q, k, v, mask, bias = inputs_for(3, 40, lengths=[40, 7, 0])
    q, k = q * 30, k * 30  # logits up to ~1e3 * scale: exp would overflow without the row max
    k[:, :, 7:] *= 10  # padded keys with far larger logits than the real ones
    for (has_mask, has_bias), out in zip(PRESENCE, sess.run(None, feeds(q, k, v, mask, bias * 50))):
        assert np.isfinite(out).all()
        if has_mask:
            assert (out[2] == 0).all()
            expected = reference(op_type, attrs, q, k, v, mask, bias * 50 if has_bias else None)
            np.testing.assert_allclose(out[:2], expected[:2].numpy(), atol=1e-4, rtol=1e-4)


def test_local_window_rows_inside_a_masked_gap_are_zero():
    """A query whose whole window falls in a gap of the key mask (not only past the end) gives zeros;
    its neighbours, which see keys on one side of the gap, still match the reference."""
    attrs = {"window_left": 2, "window_right": 3, "scale": 0.5}
    sess = session(all_overloads_model(LOCAL_WINDOW, attrs))
    q, k, v, _, bias = inputs_for(2, 30)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[0, 10:20] = False  # queries 12..16 see only masked keys
    mask[1, :8] = False  # a gap at the start: queries 0..4
    for (has_mask, has_bias), out in zip(PRESENCE, sess.run(None, feeds(q, k, v, mask, bias))):
        if not has_mask:
            continue
        assert (out[0, :, 12:17] == 0).all() and (out[1, :, :5] == 0).all()
        assert (np.abs(out[0, :, 11]) > 0).any() and (np.abs(out[0, :, 17]) > 0).any()
        expected = reference(LOCAL_WINDOW, attrs, q, k, v, mask, bias if has_bias else None)
        np.testing.assert_allclose(out, expected.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_float16_inputs(op_type, attrs):
    """FP16 in and out, float32 inside: equal to the reference on the same FP16 inputs up to output rounding.

    Both results are float32 values within the float32 tolerance of each other, each rounded
    once to FP16, so they differ by at most one FP16 ulp of the output (np.spacing) plus that
    float32 tolerance.
    """
    sess = session(all_overloads_model(op_type, attrs, elem=FLOAT16))
    q, k, v, mask, bias = (x.half() if x.is_floating_point() else x for x in inputs_for(3, 45))
    for (has_mask, has_bias), out in zip(PRESENCE, sess.run(None, feeds(q, k, v, mask, bias))):
        assert out.dtype == np.float16
        expected = reference(op_type, attrs, q, k, v, mask if has_mask else None, bias if has_bias else None)
        assert expected.dtype == torch.float16
        expected = expected.numpy()
        bound = np.spacing(np.abs(expected)).astype(np.float32) + 1e-5 * (1 + np.abs(expected.astype(np.float32)))
        assert (np.abs(out.astype(np.float32) - expected.astype(np.float32)) <= bound).all()
        if has_mask:
            assert (out[2] == 0).all()


@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_bfloat16_inputs(op_type, attrs):
    """BF16 nodes (fed through Casts, since numpy has no bfloat16): float32 inside, BF16 output."""
    casts = [oh.make_node("Cast", [x], [x + "_bf16"], to=BFLOAT16) for x in ("q", "k", "v", "rel_bias")]
    node = seo_node(op_type, attrs, True, True, "out_bf16", q="q_bf16", k="k_bf16", v="v_bf16",
                    bias="rel_bias_bf16")
    back = oh.make_node("Cast", ["out_bf16"], ["out"], to=FLOAT)
    model = build_model([node], elem=FLOAT, before=casts, after=[back],
                        outputs=[oh.make_tensor_value_info("out", FLOAT, ["B", "H", "S", "D"])])
    q, k, v, mask, bias = (x.bfloat16() if x.is_floating_point() else x for x in inputs_for(3, 45))
    (out,) = session(model).run(None, feeds(q.float(), k.float(), v.float(), mask, bias.float()))
    expected = reference(op_type, attrs, q, k, v, mask, bias).float().numpy()
    bf16_ulp = 2.0 ** -7 * np.abs(expected)  # one BF16 ulp at the output's magnitude, at most
    assert (np.abs(out - expected) <= bf16_ulp + 1e-5).all()
    assert (out[2] == 0).all()


@pytest.mark.parametrize("opset", [18, 21, 23])
@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_opsets_and_inlining(op_type, attrs, opset):
    """The body follows the model's opset; onnx's inliner (the --decomposed path) gives the same numbers."""
    model = all_overloads_model(op_type, attrs, opset=opset)
    q, k, v, mask, bias = inputs_for(3, 23)
    direct = session(model).run(None, feeds(q, k, v, mask, bias))
    inlined = onnx.inliner.inline_local_functions(model)
    del inlined.functions[:]
    assert {n.domain for n in inlined.graph.node} == {""}
    onnx.checker.check_model(inlined, full_check=True)
    for a, b in zip(direct, session(inlined).run(None, feeds(q, k, v, mask, bias))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op_type,attrs", OPS, ids=["local", "landmark"])
def test_shape_inference_gives_the_output_its_shape(op_type, attrs):
    model = all_overloads_model(op_type, attrs)
    del model.graph.output[:]
    model.graph.output.extend(oh.make_tensor_value_info(f"out_{i}", FLOAT, None) for i in range(4))
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    for out in inferred.graph.output:
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert dims == ["B", "H", "S", "D"]


def _largest_intermediate(model, feed):
    """Run the inlined model with every intermediate exposed as an output; the largest element count."""
    inlined = onnx.inliner.inline_local_functions(model)
    del inlined.functions[:]
    typed = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(inlined).graph.value_info}
    names = [o for n in inlined.graph.node for o in n.output if o in typed]
    assert len(names) > 20
    inlined.graph.output.extend(typed[n] for n in names)
    return max(int(np.prod(x.shape)) for x in session(inlined).run(None, feed))


def _peaked_local_inputs(seq=48, heads=2, dim=8):
    """Logits q_i . k_j = level_j + spike_j: levels 0, 25, 50, 75, 100 in turn (so each window spans
    100), and a spike of 400 on every 9th key, which lies outside most windows but inside their block's
    key chunk: peaked attention, where a wrong floor or a max taken before the masks shows."""
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, heads, seq, dim, generator=gen)
    v = torch.randn(1, heads, seq, dim, generator=gen)
    k = torch.zeros(1, heads, seq, dim)
    k[..., 0] = torch.arange(seq, dtype=torch.float32).remainder(5) * 25
    k[:, :, 4::9, 1] = 400.0
    q[..., :2] = 1.0
    return q, k, v


def _floor_fault(model, fault):
    """The local-window bodies (every overload) with one deliberate fault in their row-max floor."""
    if fault == "floor 2":
        assert set_body_constant(model.functions, "c_floor", 2.0) == len(model.functions)
    for node in (n for function in model.functions for n in function.node):
        if fault == "max before masking" and node.op_type == "ReduceMax":
            node.input[0] = "logits"
    return model


@pytest.mark.parametrize("fault", [None, "floor 2", "max before masking"])
def test_local_window_floor_is_exact_on_peaked_rows(fault):
    """Entries below the row max - 40 are raised to it before Softmax (ONNX Runtime's exponential is slow
    on denormals). On rows spread over hundreds that changes nothing, and each way of getting the floor
    wrong (too close to the max, or the max taken before the band and key masks) must show."""
    attrs = {"window_left": 3, "window_right": 2, "scale": 1.0}
    model = _floor_fault(all_overloads_model(LOCAL_WINDOW, attrs), fault)
    q, k, v = _peaked_local_inputs()
    mask = torch.ones(1, 48, dtype=torch.bool)
    mask[0, 30:34] = False
    k[:, :, 31, 1] = 400.0  # a masked key inside windows, with the largest logit around it
    bias = torch.randn(2, 7)
    outs = session(model).run(None, feeds(q, k, v, mask, bias))
    errors = []
    for (has_mask, has_bias), out in zip(PRESENCE, outs):
        expected = reference(LOCAL_WINDOW, attrs, q, k, v, mask if has_mask else None, bias if has_bias else None)
        errors.append(float(np.abs(out - expected.numpy()).max()))
    if fault is None:
        assert max(errors) <= ATOL, errors
    else:
        assert min(errors) > 0.1, f"the fault {fault!r} went unseen: {errors}"


@pytest.mark.parametrize("has_mask,has_bias", [(True, True), (False, False)])
def test_local_window_never_builds_a_sequence_squared_tensor(has_mask, has_bias):
    left, right, seq = 5, 2, 509
    model = build_model([seo_node(LOCAL_WINDOW, {"window_left": left, "window_right": right, "scale": 0.3},
                                  has_mask, has_bias, "out")])
    q, k, v, mask, bias = inputs_for(2, seq, heads=2, dim=8)
    block, chunk = 16, 16 + left + right
    blocks = -(-seq // block)
    largest = _largest_intermediate(model, feeds(q, k, v, mask if has_mask else None, bias if has_bias else None))
    assert largest == 2 * 2 * blocks * block * chunk  # the banded logits, O(S * window)
    assert largest < 2 * 2 * seq * seq / 10


@pytest.mark.parametrize("has_mask,has_bias", [(True, True), (False, False)])
def test_landmark_never_builds_a_sequence_squared_tensor(has_mask, has_bias):
    landmarks, seq, dim = 8, 509, 8
    model = build_model([seo_node(LANDMARK, {"num_landmarks": landmarks, "pinv_iterations": 6, "scale": 0.3},
                                  has_mask, has_bias, "out")])
    q, k, v, mask, bias = inputs_for(2, seq, heads=2, dim=dim)
    largest = _largest_intermediate(model, feeds(q, k, v, mask if has_mask else None, bias if has_bias else None))
    padded = -(-seq // landmarks) * landmarks
    assert largest <= 2 * 2 * padded * max(landmarks, dim)  # A1 / A3 / padded Q, K: O(S * L)
    assert largest < 2 * 2 * seq * seq / 10
