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


_FP_MODE_PROBE = """
import sys
import numpy as np, onnxruntime as ort
from seo_export.backends.ort_runner import create_session
from tests.backends.test_ort_runner import residual_norm_model
if sys.argv[1] == "seo":
    create_session(residual_norm_model(), ["CPUExecutionProvider"], 1)
else:  # the control
    options = ort.SessionOptions()
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    ort.InferenceSession(residual_norm_model().SerializeToString(), options, providers=["CPUExecutionProvider"])
print(float((np.array([1e-39], np.float32) * np.float32(1))[0]))  # a float32 denormal, or 0 when flushed
"""


def _denormal_after_first_session(kind: str) -> float:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _FP_MODE_PROBE, kind], capture_output=True, text=True, cwd=root,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


def test_sessions_leave_the_callers_floating_point_mode_alone():
    # ORT's set_denormal_as_zero speeds up Exp on -inf, but on the process's first session it
    # turns on flush-to-zero for the calling thread: for eager PyTorch and numpy too. Fresh
    # processes, since the control changes its process's FP mode for good.
    assert _denormal_after_first_session("seo") == pytest.approx(1e-39, rel=1e-3)
    assert _denormal_after_first_session("control") == 0.0  # the probe can see a session that flushes
