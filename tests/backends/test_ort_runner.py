import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import pytest

from seo_export.backends.ort_runner import CPU_SLOWER_FUSIONS, OrtRunner, create_session
from seo_export.errors import UsageError

HIDDEN = 16


def residual_norm_model() -> onnx.ModelProto:
    """x + r then LayerNorm: the pattern ORT fuses into SkipLayerNormalization."""
    nodes = [oh.make_node("Add", ["x", "r"], ["s"]),
             oh.make_node("LayerNormalization", ["s", "g", "b"], ["y"], epsilon=1e-12)]
    inputs = [oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2, 3, HIDDEN]) for n in "xr"]
    graph = oh.make_graph(nodes, "residual_norm", inputs, [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                          [nh.from_array(np.ones(HIDDEN, np.float32), "g"), nh.from_array(np.zeros(HIDDEN, np.float32), "b")])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)], ir_version=10)


def ops_run(tmp_path, **kwargs) -> set[str]:
    path = tmp_path / "optimized.onnx"
    create_session(residual_norm_model(), ["CPUExecutionProvider"], 1, optimized_path=str(path), **kwargs)
    return {n.op_type for n in onnx.load(path).graph.node}


def test_cpu_sessions_leave_the_slower_fusions_off(tmp_path):
    assert "SkipLayerNormFusion" in CPU_SLOWER_FUSIONS
    assert "SkipLayerNormalization" not in ops_run(tmp_path)
    assert "SkipLayerNormalization" in ops_run(tmp_path, disabled_fusions=())  # the check can see the fusion


def test_threads_stop_spinning_after_each_run():
    session = create_session(residual_norm_model(), ["CPUExecutionProvider"], 1)
    assert session.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"


def test_runner_computes_the_model_and_reports_bad_files(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(residual_norm_model(), path)
    rng = np.random.default_rng(0)
    x, r = rng.standard_normal((2, 2, 3, HIDDEN)).astype(np.float32)
    with OrtRunner(path, ["CPUExecutionProvider"]) as runner:
        y = runner.infer({"x": x, "r": r, "unused": x})["y"]
    s = x + r
    expected = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UsageError, match="ONNX Runtime cannot load"):
        OrtRunner(bad, ["CPUExecutionProvider"]).activate()
