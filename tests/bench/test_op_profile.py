from types import SimpleNamespace

import numpy as np
import onnx.helper as oh
import onnx.numpy_helper as nh
import pytest
from onnx import TensorProto

from seo_export.bench import op_profile
from seo_export.models.config import TransformerConfig


def _node(name, op, ts, dur):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def _run(ts):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 50}


def test_linear_nodes_are_weight_products_and_their_bias_adds():
    weight = nh.from_array(np.ones((4, 4), np.float32), "w")
    bias = nh.from_array(np.ones(4, np.float32), "b")
    scale = nh.from_array(np.ones((1, 4), np.float32), "s")
    nodes = [oh.make_node("MatMul", ["x", "w"], ["xw"], name="proj"),
             oh.make_node("Add", ["xw", "b"], ["y"], name="proj_bias"),
             oh.make_node("MatMul", ["y", "y"], ["yy"], name="scores"),     # two activations
             oh.make_node("Add", ["yy", "b"], ["z"], name="other_add"),     # bias, but not after a weight product
             oh.make_node("Add", ["xw", "s"], ["u"], name="two_d_add"),     # 2-D constant
             oh.make_node("Add", ["y", "z"], ["r"], name="residual")]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                          [oh.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("r", "u")],
                          [weight, bias, scale])
    assert op_profile.linear_nodes(oh.make_model(graph)) == {"proj": "linear", "proj_bias": "linear bias"}


def test_ort_totals_skip_the_warm_up_run_and_average_the_rest():
    kinds = {"proj": "linear", "proj_bias": "linear bias"}
    events = [_run(0), _node("proj", "MatMul", 1, 9000),  # warm-up: left out
              _run(100), _node("proj", "MatMul", 101, 3000), _node("proj_bias", "Add", 102, 1000),
              _run(200), _node("proj", "MatMul", 201, 5000), _node("exp", "Exp", 202, 2000)]
    assert op_profile.ort_totals(events, kinds, skip_runs=1) == {"linear": 4.0, "Exp": 1.0, "linear bias": 0.5}
    with pytest.raises(ValueError, match="1 runs"):
        op_profile.ort_totals([_run(0)], kinds, skip_runs=1)


def test_torch_totals_and_shares():
    rows = [SimpleNamespace(key="aten::addmm", self_cpu_time_total=6000.0),
            SimpleNamespace(key="aten::mm", self_cpu_time_total=2000.0),
            SimpleNamespace(key="aten::gelu", self_cpu_time_total=2000.0),
            SimpleNamespace(key="aten::view", self_cpu_time_total=0.0)]
    totals = op_profile.torch_totals(rows, runs=2)
    assert totals == {"linear": 4.0, "aten::gelu": 1.0}
    assert op_profile.share(totals, ("linear",)) == pytest.approx(0.8)


def test_small_model_end_to_end():
    config = TransformerConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=100,
                               positional_encoding_max_len=64, attention_window_size=8,
                               attention_num_landmarks=4)
    result = op_profile.measure("local", "sinusoidal", batch=1, seq=16, runs=1, threads=1, base_config=config)
    # 2 layers x (q, k, v, o, ffn in, ffn out) weight products, seen by both profilers.
    assert result["ort_ms"]["linear"] > 0 and result["ort_ms"]["linear bias"] > 0 and result["torch_ms"]["linear"] > 0
    assert 0 < result["linear_share"]["ort"] < 1 and 0 < result["linear_share"]["torch"] < 1
    text = op_profile.to_markdown(result)
    assert "| linear share |" in text and "## ONNX Runtime, by op type" in text
