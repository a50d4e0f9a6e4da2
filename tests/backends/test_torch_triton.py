"""``torch-triton``: the eager model with the seo ops on the Triton kernels (Triton's interpreter here).

Tolerances. FP32: the kernels differ from the reference ops only in the order of FP32 sums, by at
most 1e-5 (local) and 1e-4 (landmark: Newton-Schulz amplifies rounding) per op
(tests/plugins/test_kernels.py); two layers, each ending in a LayerNorm that rescales to O(1),
pass that on without growing it: 1e-4 on every output (measured ~5e-7). FP16 / BF16 (unit
roundoff u = 2^-11 / 2^-8), against the reference ops in the same precision: every layer rounds
its activations to 16 bits, and the two backends may round an attention output to neighbouring
values (1 ulp), which the next layer carries on: 4u per layer relative to the largest output
(measured ~1u).
"""

import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is imported anywhere

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

pytest.importorskip("triton")

from seo_export.backends.torch_runner import TorchRunner  # noqa: E402
from seo_export.backends.torch_triton import TorchTritonRunner, triton_device  # noqa: E402
from seo_export.cli.main import main  # noqa: E402
from seo_export.models.attention import current_ops_backend, ops_backend  # noqa: E402
from seo_export.models.build import build_model  # noqa: E402
from seo_export.models.config import TransformerConfig  # noqa: E402
from seo_export.ops import triton_backend  # noqa: E402
from seo_plugins.kernels import is_interpreted  # noqa: E402
from seo_plugins.kernels.local_window import local_window_fwd  # noqa: E402

pytestmark = pytest.mark.skipif(
    not is_interpreted(local_window_fwd) and not torch.cuda.is_available(),
    reason="Triton was imported before TRITON_INTERPRET=1 was set and no CUDA GPU is visible",
)

UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def tiny_config(attention: str) -> TransformerConfig:
    """Two layers, relative-position bias (so the kernels get rel_bias), windows and landmarks smaller than S."""
    return TransformerConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=100,
                             attention_type=attention, attention_window_size=6, attention_num_landmarks=4,
                             positional_encoding_type="relative", positional_encoding_max_relative_position=4,
                             dropout_rate=0.0, attention_dropout=0.0)


def feeds(batch=2, seq=19):
    """Odd length; the last sample padded after 10 tokens."""
    ids = np.random.default_rng(0).integers(1, 100, size=(batch, seq))
    mask = np.ones_like(ids)
    mask[-1, 10:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture
def kernel_calls(monkeypatch):
    """How often each kernel launcher was called."""
    calls = {"local": 0, "landmark": 0}
    for op, name in (("local", "local_window_attention_triton"), ("landmark", "landmark_attention_triton")):
        launcher = getattr(triton_backend, name)

        def counted(*args, _op=op, _launcher=launcher):
            calls[_op] += 1
            return _launcher(*args)

        monkeypatch.setattr(triton_backend, name, counted)
    return calls


@pytest.mark.parametrize("attention,op", [("local", "local"), ("sparse", "landmark")])
def test_the_kernels_run_only_inside_ops_backend(attention, op, kernel_calls):
    model = build_model(tiny_config(attention), seed=0).eval()
    ids = torch.from_numpy(feeds()["input_ids"])
    with torch.no_grad():
        plain = model(ids)["last_hidden_state"]
        assert kernel_calls[op] == 0 and current_ops_backend() == "reference"
        with ops_backend("triton"):
            kernels = model(ids)["last_hidden_state"]
        assert kernel_calls[op] == 2, "one call per layer"
    assert current_ops_backend() == "reference", "the block restores the reference"
    torch.testing.assert_close(kernels, plain, atol=1e-4, rtol=1e-4)
    with ops_backend("triton"):  # gradients recorded: the kernels have no backward, the reference runs
        model(ids)["last_hidden_state"].sum().backward()
    assert kernel_calls[op] == 2
    with pytest.raises(ValueError, match="ops backend must be one of reference, triton"):
        with ops_backend("cuda"):
            pass


def test_tracing_inside_ops_backend_still_emits_the_seo_ops(kernel_calls):
    """What export traces: the seo:: custom ops, never the kernels (which cannot run on fake tensors)."""
    model = build_model(tiny_config("local"), seed=0).eval()
    ids = torch.from_numpy(feeds()["input_ids"])
    with ops_backend("triton"), torch.no_grad():
        program = torch.export.export(model, (ids,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "seo.local_window_attention.default" in targets
    assert kernel_calls["local"] == 0


@pytest.mark.parametrize("attention", ["local", "sparse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_runner_matches_the_reference_backend(attention, dtype, kernel_calls):
    model = build_model(tiny_config(attention), seed=0)
    with TorchRunner(model, dtype=dtype) as runner:
        expected = runner.infer(feeds())
    with TorchTritonRunner(model, dtype=dtype) as runner:
        got = runner.infer(feeds())
    assert runner.name == "torch-triton" and runner.device == triton_device()
    assert sum(kernel_calls.values()) == 2
    for name, value in expected.items():
        scale = float(np.abs(value).max())
        tol = 1e-4 if dtype == torch.float32 else 2 * 4 * UNIT_ROUNDOFF[dtype] * scale  # 4u per layer
        np.testing.assert_allclose(got[name], value, atol=tol, rtol=0, err_msg=name)


def onnx_with_config(path, config: TransformerConfig):
    """What ``--backend torch`` and ``torch-triton`` read from an ONNX file: the config and the weights' seed."""
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["last_hidden_state"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("last_hidden_state", TensorProto.INT64, ["b", "s"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"seo_export.config": json.dumps(config.to_dict()),
                                   "seo_export.weights": json.dumps({"seed": 0})})
    onnx.save(model, str(path))
    return path


def test_run_cli_on_torch_triton_in_half_precision(tmp_path, capsys):
    path = onnx_with_config(tmp_path / "m.onnx", tiny_config("sparse"))
    out = tmp_path / "out.npz"
    status = main(["run", str(path), "--backend", "torch-triton", "--precision", "fp16", "--batch", "2",
                   "--seq-len", "9", "--warmup", "0", "--iterations", "1", "--output", str(out)])
    assert status == 0
    assert "m.onnx on torch-triton fp16, batch 2, seq 9" in capsys.readouterr().out
    with np.load(out) as saved:
        assert saved["last_hidden_state"].shape == (2, 9, 32)


def test_run_cli_refuses_precision_for_onnx_runtime(tmp_path, capsys):
    path = onnx_with_config(tmp_path / "m.onnx", tiny_config("local"))
    assert main(["run", str(path), "--backend", "ort", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["seo-export run: error: --precision applies to --backend torch and torch-triton; ort runs the "
                   "file's precision"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_without_a_gpu_or_the_interpreter_it_says_what_is_missing(tmp_path, capsys, monkeypatch):
    path = onnx_with_config(tmp_path / "m.onnx", tiny_config("local"))
    monkeypatch.delenv("TRITON_INTERPRET")
    assert main(["run", str(path), "--backend", "torch-triton"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("seo-export run: error: torch-triton runs the Triton kernels on a CUDA GPU and ")
    assert "TRITON_INTERPRET=1" in err[0]
