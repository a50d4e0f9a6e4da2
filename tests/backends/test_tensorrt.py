"""Engines built and run for real: needs TensorRT and a CUDA GPU, skipped (with that reason) elsewhere.

Written to run as it is on such a machine: `python -m pytest -m tensorrt tests/backends/test_tensorrt.py`.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from seo_export.backends.ort_runner import OrtRunner
from seo_export.backends.tensorrt.builder import build_engine
from seo_export.backends.tensorrt.layers import engine_layers, seo_plugin_layers
from seo_export.backends.tensorrt.manifest import manifest_path, read_manifest
from seo_export.backends.tensorrt.profiles import parse_profile
from seo_export.backends.tensorrt.runner import TrtRunner
from seo_export.errors import MissingDependencyError, UsageError
from seo_export.export.inspect import load_onnx
from seo_export.export.postprocess import seo_nodes
from seo_export.models import TransformerConfig
from seo_export.models.build import build_model

pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
        reason='needs TensorRT and a CUDA GPU (pip install "seo-export[tensorrt]" on a machine with an NVIDIA GPU)',
    ),
]

SMALL = {"num_layers": 2, "hidden_size": 64, "num_heads": 4, "intermediate_size": 128, "vocab_size": 100,
         "attention_window_size": 8, "attention_num_landmarks": 4}
PROFILES = [parse_profile("batch=1:2:4,seq=1:32:64"), parse_profile("batch=1:1:2,seq=64:128:256")]


def export(tmp_path_factory, attention: str):
    from seo_export.export import export_onnx

    model = build_model(TransformerConfig(attention_type=attention, **SMALL), seed=0)
    path = tmp_path_factory.mktemp(attention) / f"{attention}.onnx"
    export_onnx(model, path, precision="fp16")
    return path


@pytest.fixture(scope="module")
def standard_onnx(tmp_path_factory):
    return export(tmp_path_factory, "standard")


@pytest.fixture(scope="module")
def standard_engine(standard_onnx):
    engine = standard_onnx.with_suffix(".engine")
    build_engine(standard_onnx, engine, PROFILES, timing_cache_path=standard_onnx.parent / "timing.cache")
    return engine


def feeds(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq // 2 + 1:] = 0
    return {"input_ids": rng.integers(1, SMALL["vocab_size"], (batch, seq)), "attention_mask": mask}


def assert_matches_ort(onnx_path, engine_path, batch: int, seq: int):
    inputs = feeds(batch, seq)
    with OrtRunner(onnx_path) as ort, TrtRunner(engine_path) as trt:
        expected, actual = ort.infer(inputs), trt.infer(inputs)
    assert set(actual) >= {"last_hidden_state", "pooler_output"}
    for name in ("last_hidden_state", "pooler_output"):
        assert np.isfinite(actual[name]).all()
        # Both run the FP16 graph; kernels differ, so FP16 rounding differs on unit-scale outputs.
        np.testing.assert_allclose(actual[name], expected[name], atol=3e-2, rtol=3e-2, err_msg=name)


def test_manifest_describes_the_build(standard_onnx, standard_engine):
    manifest = read_manifest(standard_engine)
    import tensorrt as trt

    assert manifest.environment.tensorrt_version == trt.__version__
    assert manifest.environment.gpu_name == torch.cuda.get_device_name(0)
    assert manifest.profiles == PROFILES
    assert manifest.model_config["attention_type"] == "standard"
    assert (standard_onnx.parent / "timing.cache").stat().st_size > 0


@pytest.mark.parametrize("batch,seq", [(1, 1), (2, 37), (4, 64), (2, 200)])  # the last needs profile 1
def test_engine_matches_onnx_runtime(standard_onnx, standard_engine, batch, seq):
    assert_matches_ort(standard_onnx, standard_engine, batch, seq)


def test_shapes_outside_every_profile_are_refused(standard_engine):
    with TrtRunner(standard_engine) as runner, pytest.raises(UsageError, match="fit no profile"):
        runner.infer(feeds(8, 16))


def test_rebuild_reuses_the_timing_cache(standard_onnx, tmp_path):
    cache = standard_onnx.parent / "timing.cache"
    before = cache.read_bytes()
    build_engine(standard_onnx, tmp_path / "again.engine", PROFILES[:1], timing_cache_path=cache)
    assert (tmp_path / "again.engine").stat().st_size > 0
    assert len(cache.read_bytes()) >= len(before)


def test_a_manifest_from_another_machine_is_refused(standard_engine, tmp_path):
    foreign = tmp_path / "foreign.engine"
    foreign.write_bytes(standard_engine.read_bytes())
    data = json.loads(manifest_path(standard_engine).read_text())
    data["environment"]["tensorrt_version"] = "9.0.0.0"
    data["environment"]["gpu_name"] = "Some Other GPU"
    manifest_path(foreign).write_text(json.dumps(data))
    with pytest.raises(UsageError, match="TensorRT 9.0.0.0 at build.*GPU Some Other GPU at build"):
        TrtRunner(foreign).activate()
    with TrtRunner(foreign, check_manifest=False) as runner:  # the override loads it anyway
        assert runner.infer(feeds(1, 8))["last_hidden_state"].shape == (1, 8, SMALL["hidden_size"])


def test_parser_errors_name_the_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["input_ids"], ["last_hidden_state"], name="mystery", domain="nowhere")
    graph = helper.make_graph(
        [node], "bad", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("nowhere", 1)])
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(UsageError, match="node 'mystery' \\(op NoSuchOp\\)"):
        build_engine(tmp_path / "bad.onnx", tmp_path / "bad.engine", PROFILES[:1])
    assert not (tmp_path / "bad.engine").exists() and not manifest_path(tmp_path / "bad.engine").exists()


@pytest.fixture(scope="module", params=["local", "sparse"])
def seo_engine(request, tmp_path_factory):
    """A model with seo nodes (LocalWindowAttention, LandmarkAttention), built with the registered plugins."""
    onnx_path = export(tmp_path_factory, request.param)
    engine = onnx_path.with_suffix(".engine")
    return onnx_path, engine, build_engine(onnx_path, engine, PROFILES[:1])


def test_seo_op_models_match_onnx_runtime(seo_engine):
    onnx_path, engine, result = seo_engine
    assert result.manifest.environment.plugin_manifest_sha256 is not None  # built with the plugins
    assert_matches_ort(onnx_path, engine, 2, 45)


def test_seo_op_engines_hold_seo_plugin_layers(seo_engine):
    """Each seo node is a plugin layer of the seo namespace, not its function body inlined as plain layers."""
    onnx_path, engine, result = seo_engine
    nodes = [node.name for node in seo_nodes(load_onnx(onnx_path))]
    with TrtRunner(engine) as runner:
        layers = engine_layers(runner.trt, runner.engine)
    assert len(nodes) == SMALL["num_layers"]
    assert len(seo_plugin_layers(layers, nodes)) == len(nodes), [(entry.name, entry.layer_type) for entry in layers]
    assert result.manifest.seo_plugin_layers == result.seo_nodes == len(nodes)


def test_seo_nodes_without_plugins_are_refused(tmp_path_factory):
    """Without the plugins TensorRT's parser would inline the nodes' function bodies and build an engine
    without the plugin kernels; the build refuses instead, before TensorRT parses anything."""
    onnx_path = export(tmp_path_factory, "local")
    engine = onnx_path.with_suffix(".engine")
    with pytest.raises(MissingDependencyError, match="need the seo TensorRT plugins, which are not registered"):
        build_engine(onnx_path, engine, PROFILES[:1], plugin_registrar=None)
    assert not engine.exists()


def test_cli_build_then_run(standard_onnx, tmp_path):
    def seo_export(*args):
        return subprocess.run([sys.executable, "-m", "seo_export.cli.main", *map(str, args)], capture_output=True,
                              text=True, timeout=600, check=False)

    engine = tmp_path / "cli.engine"
    built = seo_export("build", standard_onnx, "-o", engine, "--profile", "batch=1:2:4,seq=8:32:64",
                       "--workspace", "1G")
    assert built.returncode == 0, built.stderr
    assert engine.is_file() and manifest_path(engine).is_file()
    ran = seo_export("run", engine, "--batch", 2, "--seq-len", 24, "--output", tmp_path / "out.npz")
    assert ran.returncode == 0, ran.stderr
    assert "last_hidden_state" in ran.stdout and "median ms" in ran.stdout
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        assert saved["last_hidden_state"].shape == (2, 24, SMALL["hidden_size"])
