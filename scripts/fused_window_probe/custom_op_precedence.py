"""Does ONNX Runtime run a registered custom-op kernel instead of a node's model-local function body?

Issue 14's fused-kernel option relies on it: the exported file would keep its portable body, and
ONNX Runtime would run the fused kernel wherever its library is registered. A node whose function
body is Identity, with a kernel of the same domain and name that adds 1, registered through
onnxruntime-extensions' Python ops (the only custom-op library installable from PyPI here): the
output says which of the two ran. Needs `pip install onnxruntime-extensions`.

Run: python scripts/fused_window_probe/custom_op_precedence.py
"""

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort

try:
    from onnxruntime_extensions import PyCustomOpDef, default_opset_domain, get_library_path, onnx_op
except ImportError:
    raise SystemExit("needs onnxruntime-extensions: pip install onnxruntime-extensions") from None

DOMAIN = default_opset_domain()  # onnxruntime-extensions registers its Python ops in this domain only


@onnx_op(op_type="AddOneProbe", inputs=[PyCustomOpDef.dt_float], outputs=[PyCustomOpDef.dt_float])
def add_one(x):
    return x + 1


def probe_model() -> onnx.ModelProto:
    body = oh.make_function(DOMAIN, "AddOneProbe", ["x"], ["y"], [oh.make_node("Identity", ["x"], ["y"])],
                            [oh.make_opsetid("", 18)])
    graph = oh.make_graph([oh.make_node("AddOneProbe", ["x"], ["y"], domain=DOMAIN)], "probe",
                          [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid(DOMAIN, 1)],
                         functions=[body], ir_version=10)


def main() -> None:
    model, x = probe_model().SerializeToString(), np.zeros(2, np.float32)
    plain = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    registered = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ran = {0.0: "the function body", 1.0: "the registered kernel"}
    print(f"onnxruntime {ort.__version__}: without the library {ran[float(plain[0])]} ran; "
          f"with it {ran[float(registered[0])]} ran")


if __name__ == "__main__":
    main()
