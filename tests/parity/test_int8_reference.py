"""The INT8 simulation validate uses to tell INT8's own loss from a broken file: it rounds as ONNX's
DynamicQuantizeLinear and the INT8 file do, and it follows the file far more closely than FP32 does."""

import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from seo_export.parity import int8_reference

SETTINGS = {"per_channel": True, "weight_type": "QInt8", "reduce_range": False, "op_types": ["MatMul", "Gemm"],
            "fp32_linear_nodes": 0}


def test_activation_rounding_is_onnx_dynamic_quantize_linear():
    """Against ONNX's own reference evaluator: DynamicQuantizeLinear, then DequantizeLinear."""
    graph = oh.make_graph(
        [oh.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
         oh.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "dq",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    reference = ReferenceEvaluator(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 19)]))
    gen = torch.Generator().manual_seed(0)
    for x in (torch.randn(4, 7, 16, generator=gen) * 3, torch.rand(5, 9, generator=gen) + 0.5,
              -torch.rand(5, 9, generator=gen)):
        expected = reference.run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(int8_reference.fake_quantized_activation(x).numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("per_channel", [True, False])
def test_weights_land_on_a_symmetric_int8_grid_within_half_a_step(per_channel):
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(6, 10, generator=gen) * torch.arange(1, 7).unsqueeze(1)
    rounded = int8_reference.fake_quantized_weight(weight, per_channel, "QInt8", False)
    absmax = weight.abs().amax(dim=1, keepdim=True) if per_channel else weight.abs().max()
    step = absmax / 127
    steps = rounded / step
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 127 + 1e-4
    assert ((rounded - weight).abs() <= step / 2 + 1e-6).all()
    largest = rounded.abs().amax(dim=1, keepdim=True) if per_channel else rounded.abs().max()
    assert torch.allclose(largest, absmax, rtol=1e-6)  # the largest weight of each range is kept exactly


def test_settings_it_cannot_follow_are_named():
    assert int8_reference.simulates(SETTINGS) is None
    assert "records no quantization" in int8_reference.simulates(None)
    assert "keeps some linear layers in FP32" in int8_reference.simulates({**SETTINGS, "fp32_linear_nodes": 2})
    assert "keeps some linear layers in FP32" in int8_reference.simulates({**SETTINGS, "op_types": ["MatMul"]})


@pytest.fixture(scope="module")
def int8_case(tmp_path_factory):
    """A peaked local model, its INT8 file's outputs on real tokens, eager FP32's, and a simulation maker."""
    from seo_export.backends.ort_runner import OrtRunner
    from seo_export.export.exporter import export_onnx
    from seo_export.export.inspect import load_onnx, stored_metadata
    from seo_export.export.quantize import quantize_file
    from seo_export.models.build import build_model
    from seo_export.models.config import TransformerConfig
    from seo_export.parity.eager import EagerModel
    from tests.export.helpers import padded_inputs

    tmp = tmp_path_factory.mktemp("int8_reference")
    config = TransformerConfig(hidden_size=64, num_layers=2, num_heads=4, vocab_size=120, intermediate_size=128,
                               attention_type="local", attention_window_size=8, positional_encoding_type="rotary",
                               dropout_rate=0.0, attention_dropout=0.0)
    model = build_model(config, seed=0, init="peaked")
    export_onnx(model, tmp / "m.onnx")
    quantize_file(tmp / "m.onnx", tmp / "m8.onnx")
    settings = stored_metadata(load_onnx(tmp / "m8.onnx"), "quantization")
    assert int8_reference.simulates(settings) is None
    feeds = padded_inputs(2, 24)
    real = feeds["attention_mask"].astype(bool)
    with OrtRunner(tmp / "m8.onnx") as runner:
        ort = runner.infer(feeds)["last_hidden_state"][real]
    fp32 = EagerModel(model)(feeds)["last_hidden_state"][real]
    simulate = lambda s=settings: EagerModel(int8_reference.simulated_int8(model, s))(feeds)["last_hidden_state"][real]  # noqa: E731
    return ort, fp32, simulate, settings


def test_the_simulation_follows_the_int8_file_far_closer_than_fp32_does(int8_case):
    """ORT's INT8 file is ~700x nearer the simulation than eager FP32 is (1e-4 against 0.075), so a
    verdict on the simulation speaks for INT8 itself."""
    ort, fp32, simulate, _ = int8_case
    to_fp32, to_simulation = np.abs(ort - fp32).max(), np.abs(ort - simulate()).max()
    assert to_fp32 > 1e-2  # INT8 moved the output, so the comparison has something to see
    assert to_simulation < to_fp32 / 50, (to_simulation, to_fp32)


@pytest.mark.parametrize("fault", ["per-tensor weights", "no input rounding", "no weight rounding"])
def test_a_simulation_that_rounds_otherwise_misses_the_file(int8_case, monkeypatch, fault):
    """The closeness above fails for a simulation that rounds differently from the file."""
    ort, fp32, simulate, settings = int8_case
    if fault == "per-tensor weights":
        settings = {**settings, "per_channel": False}
    elif fault == "no input rounding":
        monkeypatch.setattr(int8_reference, "fake_quantized_activation", lambda x: x)
    else:
        monkeypatch.setattr(int8_reference, "fake_quantized_weight", lambda w, *args: w)
    assert np.abs(ort - simulate(settings)).max() > np.abs(ort - fp32).max() / 50
