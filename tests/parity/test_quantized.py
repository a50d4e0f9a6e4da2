"""The INT8 parity rule: per-token cosine, pooled relative error, top-1 agreement; it passes a healthy
quantization of a small peaked model and fails one with a wrong weight scale."""

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from seo_export.backends.ort_runner import create_session
from seo_export.export.exporter import build_onnx
from seo_export.export.quantize import quantize_model
from seo_export.models.build import build_model
from seo_export.parity.eager import EagerModel
from seo_export.parity.quantized import (
    COSINE_RULE,
    INTERNAL_RULE,
    POOLED_RULE,
    TOP1_RULE,
    Int8Thresholds,
    check_int8,
    check_pooled,
    check_token_cosine,
    check_top1,
    int8_figures,
    pooled_relative_errors,
    token_cosines,
    top1_agreement,
)
from seo_export.parity.tolerance import Verdict, combine
from tests.export.helpers import padded_inputs, small_config

OUTPUTS = ("last_hidden_state", "pooler_output", "logits")
MASK = np.array([[1, 1, 1], [1, 1, 0]])


def rotated(x: np.ndarray, angle: float) -> np.ndarray:
    """x with its first two features rotated by ``angle``: cosine exactly cos(angle) for x = e0."""
    out = x.copy()
    c, s = np.cos(angle), np.sin(angle)
    out[..., 0], out[..., 1] = c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1]
    return out


# ---- synthetic arrays ---------------------------------------------------------------------------------------

def test_an_internal_only_scaled_fails_by_relative_error_not_cosine():
    """A module output scaled x4 keeps every cosine at 1; the break search's relative bound sees it."""
    expected = np.random.default_rng(0).normal(size=(2, 3, 8))
    scaled = 4 * expected
    assert check_int8("layers.0.attention.output", scaled, expected, MASK).passed  # cosine alone: blind
    verdict = check_int8("layers.0.attention.output", scaled, expected, MASK, internal=True)
    assert not verdict.passed and verdict.rule == INTERNAL_RULE and verdict.measured == pytest.approx(3.0)
    assert check_int8("layers.0.attention.output", expected * 1.01, expected, MASK, internal=True).passed


def test_token_cosine_is_per_real_token():
    expected = np.zeros((2, 3, 4))
    expected[..., 0] = 1.0
    actual = expected.copy()
    actual[0, 1] = rotated(expected[0, 1], 0.05)
    actual[1, 2] = -expected[1, 2]  # a padded token: not judged
    cos = token_cosines(actual, expected, MASK)
    assert cos.shape == (5,) and cos.min() == pytest.approx(np.cos(0.05))
    verdict = check_token_cosine(actual, expected, MASK, min_cosine=0.999)
    assert not verdict.passed and verdict.rule == COSINE_RULE
    assert verdict.measured == pytest.approx(1 - np.cos(0.05)) and verdict.threshold == pytest.approx(1e-3)
    assert "min per-token cosine 0.99875" in verdict.reason
    assert check_token_cosine(actual, expected, MASK, min_cosine=0.998).passed  # overridable
    assert check_token_cosine(rotated(expected, 0.06), expected, MASK).passed  # cos 0.9982 >= 0.998, the default
    assert not check_token_cosine(rotated(expected, 0.07), expected, MASK).passed  # cos 0.99755


def test_token_cosine_handles_zero_vectors_and_nonfinite_values():
    zeros = np.zeros((1, 2, 3))
    assert check_token_cosine(zeros, zeros).passed
    one = zeros.copy()
    one[0, 0, 0] = 1.0
    assert not check_token_cosine(zeros, one).passed
    nan = one.copy()
    nan[0, 1, 2] = np.nan
    assert "NaN/Inf" in check_token_cosine(nan, one).reason
    assert "reference has 1 NaN/Inf" in check_token_cosine(one, nan).reason
    with pytest.raises(ValueError, match="different shapes"):
        check_token_cosine(one, one[:, :1])


def test_pooled_relative_error_per_real_sample():
    expected = np.array([[3.0, 4.0], [1.0, 0.0], [9.0, 9.0]])
    actual = expected + np.array([[0.1, 0.0], [0.0, 0.02], [5.0, 5.0]])
    mask = np.array([[1, 1], [1, 0], [0, 0]])  # the third sample is all padding: not judged
    np.testing.assert_allclose(pooled_relative_errors(actual, expected, mask), [0.02, 0.02])
    verdict = check_pooled(actual, expected, mask, max_relative=0.05)
    assert verdict.passed and verdict.rule == POOLED_RULE and verdict.measured == pytest.approx(0.02)
    failed = check_pooled(actual, expected, max_relative=0.05)  # no mask: every sample counts
    assert not failed.passed and failed.measured == pytest.approx(np.sqrt(50) / np.sqrt(162))
    assert not check_pooled(actual, expected, mask, max_relative=0.01).passed


def test_top1_agreement_counts_real_untied_samples():
    expected = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 0.0], [1.0, 1.001, 0.0], [0.0, 0.0, 9.0]])
    actual = np.array([[0.0, 1.0, 4.0], [1.0, 2.0, 0.0], [1.001, 1.0, 0.0], [9.0, 0.0, 0.0]])
    mask = np.array([[1], [1], [1], [0]])
    # sample 1 disagrees; sample 2 is a tie (gap 0.001 of a spread of 1.001); sample 3 is padding
    assert top1_agreement(actual, expected, mask) == (1, 2, 1)
    verdict = check_top1(actual, expected, mask)
    assert not verdict.passed and verdict.rule == TOP1_RULE and verdict.measured == pytest.approx(0.5)
    assert "1/2 = 0.500 < 1" in verdict.reason and "1 tie(s) not counted" in verdict.reason
    assert check_top1(actual, expected, mask, min_agreement=0.5).passed
    assert check_top1(actual[:1], expected[:1]).passed
    assert top1_agreement(actual, expected, mask, tie=0.0) == (1, 3, 0)


def test_check_int8_picks_the_check_by_output_and_combines_like_the_other_rules():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 3, 8))
    pooled, logits = rng.normal(size=(2, 8)), np.array([[0.0, 3.0], [2.0, 0.0]])
    expected = {"last_hidden_state": hidden, "pooler_output": pooled, "logits": logits}
    verdicts = {name: check_int8(name, value, value, MASK) for name, value in expected.items()}
    assert [v.rule for v in verdicts.values()] == [COSINE_RULE, POOLED_RULE, TOP1_RULE]
    assert all(v.passed and v.measured == pytest.approx(0.0) for v in verdicts.values())
    broken = dict(verdicts, pooler_output=check_int8("pooler_output", pooled * 1.2, pooled, MASK))
    combined = combine(broken)
    assert not combined.passed and combined.reason.startswith("pooler_output: pooled relative error ||a-e||/||e|| 0.2 > 0.075")
    strict = Int8Thresholds(min_cosine=1.0, max_pooled_rel=0.0, min_top1=1.0)
    assert check_int8("pooler_output", pooled * 1.01, pooled, MASK, thresholds=strict).passed is False
    scaled = check_int8("logits", logits * 4, logits, MASK)  # top-1 cannot see a scale that keeps the argmax
    assert scaled.passed
    with_rel = check_int8("logits", logits * 4, logits, MASK, thresholds=Int8Thresholds(max_logits_rel=0.1))
    assert not with_rel.passed and with_rel.rule == POOLED_RULE and with_rel.reason.startswith("relative error: ")
    # JSON-ready, in the report's verdict structure
    data = json.loads(json.dumps(combined.to_dict()))
    assert set(data) == {"passed", "rule", "threshold", "measured", "baseline", "reason"}
    assert Verdict.from_dict(data) == combined


def test_figures_are_json_ready():
    rng = np.random.default_rng(1)
    expected = {"last_hidden_state": rng.normal(size=(2, 3, 4)), "pooler_output": rng.normal(size=(2, 4)),
                "logits": np.array([[0.0, 1.0], [1.0, 0.0]])}
    figures = int8_figures(expected, expected, MASK)
    assert figures == {"min_token_cosine": pytest.approx(1.0), "mean_token_cosine": pytest.approx(1.0),
                       "max_pooled_rel": 0.0, "top1_agreement": 1.0, "top1_ties": 0}
    json.dumps(figures)


# ---- a real quantization ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quantized():
    """A small peaked local-attention model with a 3-label head: eager FP32 and its INT8 graph."""
    config = dataclasses.replace(small_config("local", "rotary"), num_labels=3)
    model = build_model(config, seed=0, init="peaked")
    return EagerModel(model), quantize_model(build_onnx(model)), model


def judge(graph: onnx.ModelProto, eager: EagerModel) -> dict[str, Verdict]:
    session = create_session(graph, ["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    verdicts = {}
    for batch, seq in ((3, 13), (3, 41), (1, 1)):
        feeds = padded_inputs(batch, seq)
        actual, expected = dict(zip(names, session.run(None, feeds))), eager(feeds)
        for name in OUTPUTS:
            verdicts[f"{name}@{seq}"] = check_int8(name, actual[name], expected[name], feeds["attention_mask"])
    return verdicts


def test_a_healthy_quantization_passes(quantized):
    eager, graph, _ = quantized
    verdicts = judge(graph, eager)
    assert combine(verdicts).passed, combine(verdicts).reason
    # and it is INT8, not a lucky FP32 graph: the error is there, within the bars
    assert max(v.measured for k, v in verdicts.items() if k.startswith("last_hidden_state")) > 1e-6


def scale_of(graph: onnx.ModelProto, weight: np.ndarray) -> str:
    """The scale initializer of the INT8 weight that dequantizes closest to ``weight`` ([out, in], nn.Linear's)."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}

    def distance(name: str) -> float:
        base = name[: -len("_quantized")]
        q = values[name].astype(np.float64) - values[base + "_zero_point"].astype(np.float64)
        return float(np.abs(q * values[base + "_scale"] - weight.T).max()) if q.shape == weight.T.shape else np.inf

    return min((n for n in values if n.endswith("_quantized")), key=distance)[: -len("_quantized")] + "_scale"


def with_scale(graph: onnx.ModelProto, scale_name: str, factor: float) -> onnx.ModelProto:
    broken = onnx.ModelProto()
    broken.CopyFrom(graph)
    tensor = next(t for t in broken.graph.initializer if t.name == scale_name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(factor), scale_name))
    return broken


@pytest.mark.parametrize("factor", [4.0, 0.25])
def test_a_wrong_weight_scale_fails(quantized, factor):
    eager, graph, model = quantized
    scale = scale_of(graph, model.layers[0].attention.v_proj.weight.detach().numpy())
    verdict = combine(judge(with_scale(graph, scale, factor), eager))
    assert not verdict.passed, verdict.reason
