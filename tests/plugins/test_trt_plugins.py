"""The seo TensorRT plugins in real engines: register, parse a one-node ONNX model, build, run,
compare with the reference ops. Needs TensorRT (10.12+) and a CUDA GPU; skipped elsewhere.

The AOT kernels come from ``seo-export plugins compile --model`` run in a subprocess (the
other kernel tests may have loaded Triton in its interpreter, which cannot compile), handed
to the plugins through SEO_PLUGINS_KERNEL_DIR. The JIT path runs Triton in this process.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from seo_export import ops
from seo_export.backends.tensorrt import loader

pytestmark = pytest.mark.tensorrt

_trt, _trt_problem = loader.import_tensorrt()
_gpu_problem = loader._gpu_problem()
if _trt_problem or _gpu_problem:
    pytest.skip(f"needs TensorRT and a CUDA GPU: {' and '.join(p for p in (_trt_problem, _gpu_problem) if p)}",
                allow_module_level=True)

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from seo_plugins.trt import register_plugins, rules  # noqa: E402

trt = _trt
BATCH, HEADS, HEAD_DIM, MAX_SEQ, K = 2, 2, 16, 64, 2
SHAPES = [(2, 37), (1, 1), (2, 64)]  # (batch, seq) run on one engine: odd length, one token, the maximum
NODES = {
    rules.LOCAL_WINDOW: dict(window_left=5, window_right=2, scale=0.3),
    rules.LANDMARK: dict(num_landmarks=8, pinv_iterations=6, scale=0.3),
}
ONNX_TYPES = {torch.float16: TensorProto.FLOAT16, torch.float32: TensorProto.FLOAT}
DTYPE_NAMES = {torch.float16: "fp16", torch.float32: "fp32"}
TOLERANCES = {torch.float16: dict(atol=2e-3, rtol=2e-3), torch.float32: dict(atol=1e-4, rtol=1e-4)}


def arch() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"


def one_node_model(plugin: str, dtype, bias: np.ndarray, aot=None) -> onnx.ModelProto:
    """q, k, v [B, H, S, D] and key_mask [B, S] as inputs, the bias table as a weight, one seo node."""
    elem = ONNX_TYPES[dtype]
    qkv = [helper.make_tensor_value_info(n, elem, ["batch", HEADS, "seq", HEAD_DIM]) for n in ("q", "k", "v")]
    mask = helper.make_tensor_value_info("key_mask", TensorProto.BOOL, ["batch", "seq"])
    out = helper.make_tensor_value_info("out", elem, ["batch", HEADS, "seq", HEAD_DIM])
    attrs = dict(NODES[plugin], plugin_namespace=rules.NAMESPACE, plugin_version=rules.VERSION)
    if aot is not None:
        attrs["aot"] = int(aot)
    node = helper.make_node(plugin, ["q", "k", "v", "key_mask", "rel_bias"], ["out"], name=f"{plugin}_0",
                            domain=rules.NAMESPACE, **attrs)
    graph = helper.make_graph([node], "one_node", [*qkv, mask], [out],
                              [numpy_helper.from_array(bias, "rel_bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(rules.NAMESPACE, 1)], ir_version=9)
    model.metadata_props.add(key="seo_export.config",
                             value=json.dumps({"hidden_size": HEADS * HEAD_DIM, "num_heads": HEADS,
                                               "positional_encoding_type": "relative",
                                               "positional_encoding_max_relative_position": K}))
    return model


@pytest.fixture(scope="module")
def bias_tables():
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(HEADS, 2 * K + 1, generator=gen)
    return {dtype: table.to(dtype).numpy() for dtype in ONNX_TYPES}


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory, bias_tables):
    """Every AOT kernel of these tests, compiled for this GPU by the CLI in a clean subprocess."""
    root = tmp_path_factory.mktemp("trt_plugins")
    out = root / "kernels"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for plugin in NODES:
        for dtype in ONNX_TYPES:
            path = root / f"{plugin}_{DTYPE_NAMES[dtype]}.onnx"
            onnx.save(one_node_model(plugin, dtype, bias_tables[dtype]), str(path))
    merged = {"kernels": []}
    for path in sorted(root.glob("*.onnx")):
        part = root / f"{path.stem}_kernels"
        result = subprocess.run([sys.executable, "-m", "seo_export.cli.main", "plugins", "compile", "--model",
                                 str(path), "--arch", arch(), "-o", str(part), "--quiet"],
                                env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = json.loads((part / "manifest.json").read_text())
        out.mkdir(exist_ok=True)
        for entry in manifest["kernels"]:
            (out / entry["ptx"]).write_text((part / entry["ptx"]).read_text())
            merged["kernels"].append(entry)
    (out / "manifest.json").write_text(json.dumps(merged))
    return out


@pytest.fixture(scope="module")
def registered(kernel_dir):
    os.environ[rules.KERNEL_DIR_ENV] = str(kernel_dir)
    os.environ[rules.ARCH_ENV] = arch()
    info = register_plugins()
    yield info
    os.environ.pop(rules.KERNEL_DIR_ENV, None)
    os.environ.pop(rules.ARCH_ENV, None)


def network_flags(aot: bool) -> int:
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    name = "PREFER_AOT_PYTHON_PLUGINS" if aot else "PREFER_JIT_PYTHON_PLUGINS"
    return flags | (1 << int(getattr(trt.NetworkDefinitionCreationFlag, name)))


def build(model: onnx.ModelProto, aot: bool) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(aot))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        raise AssertionError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name in ("q", "k", "v"):
        profile.set_shape(name, (1, HEADS, 1, HEAD_DIM), (BATCH, HEADS, 32, HEAD_DIM),
                          (BATCH, HEADS, MAX_SEQ, HEAD_DIM))
    profile.set_shape("key_mask", (1, 1), (BATCH, 32), (BATCH, MAX_SEQ))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, "TensorRT could not build the engine (see its log above)"
    return bytes(plan)


def inputs_for(batch, seq, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, HEADS, seq, HEAD_DIM, generator=gen).to(dtype).cuda() for _ in range(3))
    mask = torch.rand(batch, seq, generator=gen) > 0.3
    if batch > 1:
        mask[1] = False  # a fully padded sample
    return q, k, v, mask.cuda()


def run_engine(plan: bytes, feeds: dict) -> torch.Tensor:
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    for name, tensor in feeds.items():
        assert context.set_input_shape(name, tuple(tensor.shape))
        assert context.set_tensor_address(name, tensor.data_ptr())
    out = torch.empty(tuple(context.get_tensor_shape("out")), dtype=feeds["q"].dtype, device="cuda")
    assert context.set_tensor_address("out", out.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return out


def reference(plugin, q, k, v, mask, bias):
    attrs = NODES[plugin]
    if plugin == rules.LOCAL_WINDOW:
        return ops.local_window_attention(q, k, v, window_left=attrs["window_left"],
                                          window_right=attrs["window_right"], key_padding_mask=mask,
                                          rel_bias=bias, scale=attrs["scale"])
    return ops.landmark_attention(q, k, v, num_landmarks=attrs["num_landmarks"],
                                  pinv_iterations=attrs["pinv_iterations"], key_padding_mask=mask, rel_bias=bias,
                                  scale=attrs["scale"])


def test_plugins_are_registered_with_tensorrt(registered):
    registry = trt.get_plugin_registry()
    for plugin in NODES:
        assert registry.get_creator(plugin, rules.VERSION, rules.NAMESPACE) is not None
    assert register_plugins() is registered, "registering again changes nothing"
    assert loader.register_seo_plugins().manifest_sha256 is not None


@pytest.mark.parametrize("aot", [True, False], ids=["aot", "jit"])
@pytest.mark.parametrize("dtype", list(ONNX_TYPES), ids=str)
@pytest.mark.parametrize("plugin", list(NODES))
def test_engine_matches_the_reference(registered, bias_tables, plugin, dtype, aot):
    plan = build(one_node_model(plugin, dtype, bias_tables[dtype]), aot)
    bias = torch.from_numpy(bias_tables[dtype]).cuda()
    for batch, seq in SHAPES:
        q, k, v, mask = inputs_for(batch, seq, dtype)
        out = run_engine(plan, {"q": q, "k": k, "v": v, "key_mask": mask})
        expected = reference(plugin, q, k, v, mask, bias)
        assert out.dtype == dtype and out.shape == q.shape
        torch.testing.assert_close(out.float(), expected.float(), **TOLERANCES[dtype])
        if batch > 1:
            assert (out[1] == 0).all(), "a fully padded sample gives zeros, not NaN"


RUN_WITHOUT_PLUGINS = """
import sys, numpy as np, tensorrt as trt, torch
plan = open(sys.argv[1], "rb").read()
engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan)
assert engine is not None, "the engine does not deserialize without the seo plugin module"
context = engine.create_execution_context()
data = np.load(sys.argv[2])
feeds = {n: torch.from_numpy(data[n]).cuda() for n in ("q", "k", "v", "key_mask")}
for name, t in feeds.items():
    context.set_input_shape(name, tuple(t.shape)); context.set_tensor_address(name, t.data_ptr())
out = torch.empty(tuple(context.get_tensor_shape("out")), dtype=feeds["q"].dtype, device="cuda")
context.set_tensor_address("out", out.data_ptr())
assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
torch.cuda.synchronize()
assert "seo_plugins" not in sys.modules
np.save(sys.argv[3], out.cpu().numpy())
"""


def test_aot_engine_runs_without_python_plugins(registered, bias_tables, tmp_path):
    """The point of AOT: a process that never imports seo_plugins runs the engine."""
    dtype = torch.float16
    plan = build(one_node_model(rules.LOCAL_WINDOW, dtype, bias_tables[dtype]), aot=True)
    (tmp_path / "model.engine").write_bytes(plan)
    q, k, v, mask = inputs_for(2, 37, dtype, seed=3)
    np.savez(tmp_path / "inputs.npz", q=q.cpu().numpy(), k=k.cpu().numpy(), v=v.cpu().numpy(),
             key_mask=mask.cpu().numpy())
    env = {k_: v_ for k_, v_ in os.environ.items() if k_ not in (rules.KERNEL_DIR_ENV, rules.ARCH_ENV)}
    result = subprocess.run([sys.executable, "-c", RUN_WITHOUT_PLUGINS, str(tmp_path / "model.engine"),
                             str(tmp_path / "inputs.npz"), str(tmp_path / "out.npy")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.from_numpy(np.load(tmp_path / "out.npy")).cuda()
    expected = reference(rules.LOCAL_WINDOW, q, k, v, mask, torch.from_numpy(bias_tables[dtype]).cuda())
    torch.testing.assert_close(out.float(), expected.float(), **TOLERANCES[dtype])


def test_node_aot_attribute_overrides_the_network_preference(registered, bias_tables):
    dtype = torch.float32
    plan = build(one_node_model(rules.LOCAL_WINDOW, dtype, bias_tables[dtype], aot=False), aot=True)
    q, k, v, mask = inputs_for(2, 37, dtype)
    out = run_engine(plan, {"q": q, "k": k, "v": v, "key_mask": mask})
    expected = reference(rules.LOCAL_WINDOW, q, k, v, mask, torch.from_numpy(bias_tables[dtype]).cuda())
    torch.testing.assert_close(out, expected, **TOLERANCES[dtype])


def test_a_node_with_a_negative_window_is_refused(registered, bias_tables):
    model = one_node_model(rules.LOCAL_WINDOW, torch.float16, bias_tables[torch.float16])
    for attribute in model.graph.node[0].attribute:
        if attribute.name == "window_left":
            attribute.i = -1
    with pytest.raises(AssertionError):
        build(model, aot=True)


def test_seo_export_build_uses_the_aot_plugins(registered, tmp_path, monkeypatch):
    """`seo-export build` on an exported FP16 model with seo nodes: its network must prefer the AOT
    implementations (with both defined and no preference, TensorRT refuses to create the plugins)."""
    from seo_export.backends.tensorrt.builder import build_engine, network_flags as builder_flags
    from seo_export.backends.tensorrt.profiles import parse_profile

    assert builder_flags(trt) & (1 << int(trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS))
    config = dict(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=50,
                  attention_type="local", attention_window_size=8, positional_encoding_type="relative",
                  positional_encoding_max_relative_position=4)
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for args in (["export", "--config", "config.json", "--precision", "fp16", "-o", "model.onnx"],
                 ["plugins", "compile", "--model", "model.onnx", "--arch", arch(), "-o", "kernels", "--quiet"]):
        result = subprocess.run([sys.executable, "-m", "seo_export.cli.main", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    monkeypatch.setenv(rules.KERNEL_DIR_ENV, str(tmp_path / "kernels"))
    profile = parse_profile("batch=1:2:4,seq=1:16:64")
    result = build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", [profile])
    assert result.engine_path.is_file() and result.manifest.environment.plugin_manifest_sha256
