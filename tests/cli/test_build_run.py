"""`seo-export build` and `run`: what works without TensorRT, and every error path, as users meet them."""

import json
import re
import subprocess
import sys
import types

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from seo_export.backends.tensorrt.builder import (
    check_build_inputs,
    check_seo_nodes,
    describe_parser_errors,
    network_flags,
    require_plugins,
)
from seo_export.backends.tensorrt.loader import PluginRegistration, tensorrt_available
from seo_export.backends.tensorrt.manifest import EngineManifest, Environment, sha256_bytes, write_manifest
from seo_export.backends.tensorrt.profiles import parse_profile
from seo_export.backends.tensorrt.runner import read_engine
from seo_export.cli.build import plugin_layers_cell
from seo_export.cli.main import main
from seo_export.backends.torch_runner import torch_model_from_onnx
from seo_export.cli.run import read_inputs, validate_inputs
from seo_export.bench.export_scaling import local_node_model
from seo_export.errors import MissingDependencyError, UsageError
from seo_export.models import TransformerConfig
from seo_export.models.build import build_model
from tests.cli.helpers import assert_one_line_error

CONFIG = TransformerConfig(num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=50)
PROFILE = "batch=1:2:4,seq=1:16:64"
needs_no_tensorrt = pytest.mark.skipif(tensorrt_available(), reason="checks the error where TensorRT is missing")


def run_in_parallel(commands: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """Run ``seo-export ARGS...`` for every (args, cwd) at once: each process spends seconds importing
    torch, so running them side by side keeps the suite fast."""
    started = {
        name: subprocess.Popen([sys.executable, "-m", "seo_export.cli.main", *map(str, args)], cwd=cwd, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name, (args, cwd) in commands.items()
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def tiny_onnx(path, config=CONFIG, prefix="", metadata=True, fixed_batch=None):
    """A small ONNX file shaped like an export: seo-export metadata, weights under the model's parameter
    names, and outputs that are easy to check (the masked word embeddings, and their first token)."""
    state = build_model(config, seed=0).state_dict()
    weights = [numpy_helper.from_array(t.numpy(), prefix + name) for name, t in state.items()]
    weights += [numpy_helper.from_array(np.array(0, np.int64), "first"),
                numpy_helper.from_array(np.array([-1], np.int64), "last_axis")]
    nodes = [
        helper.make_node("Gather", [prefix + "embeddings.word.weight", "input_ids"], ["embedded"], name="embed"),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT, name="mask_cast"),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"], name="mask_unsqueeze"),
        helper.make_node("Mul", ["embedded", "mask_3d"], ["last_hidden_state"], name="mask_mul"),
        helper.make_node("Gather", ["last_hidden_state", "first"], ["pooler_output"], axis=1, name="pool"),
    ]
    dims = [fixed_batch or "batch", "seq"]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, config.hidden_size]),
         helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, [dims[0], config.hidden_size])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if metadata:
        helper.set_model_props(model, {"seo_export.config": json.dumps(config.to_dict()),
                                       "seo_export.weights": json.dumps({"seed": 0})})
    onnx.save(model, str(path))
    return path


@pytest.fixture
def onnx_path(tmp_path):
    return tiny_onnx(tmp_path / "tiny.onnx")


def fake_engine(tmp_path, manifest=True):
    """Bytes that start like a TensorRT plan, with a manifest that vouches for them."""
    path = tmp_path / "model.engine"
    path.write_bytes(b"ftrt" + bytes(60))
    if manifest:
        environment = Environment("10.12.0.36", "12.8", "NVIDIA H200", "9.0", None)
        write_manifest(EngineManifest(environment, "0" * 64, sha256_bytes(path.read_bytes()),
                                      [parse_profile(PROFILE)], model_config=CONFIG.to_dict()), path)
    return path


INPUT_IDS = np.array([[1, 2, 3, 4], [5, 6, 7, 0]], dtype=np.int32)
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=np.int64)


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Every command-line case of this file, each in its own folder, run once and side by side."""
    root = tmp_path_factory.mktemp("cli")
    folders = {name: root / name for name in ("order", "no_trt", "engines")}
    for name, folder in folders.items():
        folder.mkdir()
        if name != "engines":
            tiny_onnx(folder / "tiny.onnx")
    (folders["engines"] / "garbage.engine").write_bytes(b"\x00not a plan")
    fake_engine(folders["engines"])
    commands = {
        "profiles_out_of_order": (["build", "tiny.onnx", "-o", "tiny.engine", "--profile",
                                   "batch=1:8:4,seq=16:512:4096"], folders["order"]),
        "run_missing_engine": (["run", "missing.engine"], folders["engines"]),
        "run_not_an_engine": (["run", "garbage.engine"], folders["engines"]),
    }
    if not tensorrt_available():
        # Default output (engines/tiny.engine): not even the folder may appear.
        commands["build_without_tensorrt"] = (["build", "tiny.onnx", "--profile", PROFILE], folders["no_trt"])
        commands["run_without_tensorrt"] = (["run", "model.engine", "--output", "out.npz"], folders["engines"])
    return folders, run_in_parallel(commands)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ---- build ---------------------------------------------------------------------------------------------------

def test_build_refuses_profiles_out_of_order_before_tensorrt(cli):
    folders, results = cli
    assert_one_line_error(results["profiles_out_of_order"], "batch 1:8:4 is out of order; need min <= opt <= max")
    assert results["profiles_out_of_order"].returncode == 2
    assert listing(folders["order"]) == ["tiny.onnx"]


@needs_no_tensorrt
def test_build_without_tensorrt_is_one_line_and_writes_nothing(cli):
    folders, results = cli
    result = results["build_without_tensorrt"]
    assert_one_line_error(result, "building an engine needs TensorRT and a CUDA GPU", 'pip install "seo-export[tensorrt]"')
    assert result.returncode == 3
    assert listing(folders["no_trt"]) == ["tiny.onnx"]


@pytest.mark.parametrize("setup,fragment", [
    (lambda d: (d / "x.onnx").write_bytes(b"\x01\x02garbage\xff"), "is not an ONNX model"),
    (lambda d: None, "ONNX model {d}/x.onnx does not exist"),
    (lambda d: tiny_onnx(d / "x.onnx", fixed_batch=1), "fixed batch of 1, but the profile asks for 1:2:4"),
    (lambda d: tiny_onnx(d / "x.onnx", config=CONFIG.replace(positional_encoding_type="learned",
                                                             positional_encoding_max_len=32)),
     "learned positional encoding stops at 32 tokens"),
])
def test_build_inputs_are_checked_before_tensorrt(tmp_path, setup, fragment):
    setup(tmp_path)
    with pytest.raises(UsageError) as info:
        check_build_inputs(tmp_path / "x.onnx", tmp_path / "x.engine", [parse_profile(PROFILE)])
    assert fragment.format(d=tmp_path) in str(info.value)


def test_build_refuses_to_overwrite_its_input(onnx_path):
    with pytest.raises(UsageError, match="the engine path is the ONNX path"):
        check_build_inputs(onnx_path, onnx_path, [parse_profile(PROFILE)])


def test_network_flags_ask_for_strong_typing_and_aot_plugins():
    tensorrt_10 = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=2))
    assert network_flags(tensorrt_10) == 1 << 2
    with_aot = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace(
        STRONGLY_TYPED=2, PREFER_AOT_PYTHON_PLUGINS=3))
    assert network_flags(with_aot) == (1 << 2) | (1 << 3)
    without_flag = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace())
    assert network_flags(without_flag) == 0  # a TensorRT where strong typing is the only mode


class ParserError:
    """The parts of tensorrt.ParserError the message uses (older bindings lack node_name/node_operator)."""

    def __init__(self, index, desc, name=None, op=None):
        self.node, self.desc = (lambda: index), (lambda: desc)
        self.code = lambda: types.SimpleNamespace(name="UNSUPPORTED_NODE")
        if name is not None:
            self.node_name, self.node_operator = (lambda: name), (lambda: op)


def test_parser_errors_name_the_node_and_op():
    errors = [ParserError(3, "Plugin not found, are the plugin name, version, and namespace correct?\nmore",
                          "attn_0", "LocalWindowAttention"), ParserError(5, "other")]
    message = describe_parser_errors(errors)
    assert message.startswith("TensorRT cannot parse node 'attn_0' (op LocalWindowAttention): UNSUPPORTED_NODE: "
                              "Plugin not found")
    assert "(+1 more)" in message and "\n" not in message


def test_parser_errors_from_older_bindings_use_the_graph(onnx_path):
    nodes = list(onnx.load(str(onnx_path)).graph.node)
    message = describe_parser_errors([ParserError(3, "bad shapes")], nodes)
    assert message == "TensorRT cannot parse node 'mask_mul' (op Mul): UNSUPPORTED_NODE: bad shapes"


def local_node(**changes):
    """A one-node model like the exporter's seo::LocalWindowAttention node, with attributes changed or removed."""
    model = local_node_model(window_left=4, window_right=4, head_dim=8)
    node = model.graph.node[0]
    node.name = "attn_0"
    for name, value in changes.items():
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(kept)
        if value is not None:
            node.attribute.append(helper.make_attribute(name, value))
    return model


def test_seo_nodes_as_exported_pass_the_build_checks():
    check_seo_nodes(local_node())


@pytest.mark.parametrize("changes,fragment", [
    # The parser hands int attributes to the plugin as int32: 2**32 + 4 would arrive as 4.
    ({"window_left": 2 ** 32 + 4}, "window_left = 4294967300 is larger than the kernels allow"),
    ({"window_right": -1}, "window_right must be >= 0"),
    ({"plugin_namespace": None}, "has no plugin_namespace attribute, so TensorRT would not find the seo plugin"),
    ({"plugin_version": "2"}, "plugin_version is '2'; this seo-export provides version 1"),
    ({"scale": None}, "missing attribute scale"),
])
def test_seo_nodes_the_plugins_cannot_take_are_refused_before_tensorrt(changes, fragment):
    with pytest.raises(UsageError, match=re.escape(fragment)) as info:
        check_seo_nodes(local_node(**changes))
    assert str(info.value).startswith("node 'attn_0' (seo::LocalWindowAttention_no_mask_no_bias)")


def test_build_checks_the_seo_nodes_first(tmp_path):
    path = tmp_path / "node.onnx"
    onnx.save(local_node(window_right=2 ** 31), str(path))
    with pytest.raises(UsageError, match="window_right = 2147483648 is larger than the kernels allow"):
        check_build_inputs(path, tmp_path / "node.engine", [parse_profile(PROFILE)])


def test_seo_nodes_need_registered_plugins():
    # Without the plugins TensorRT's parser would inline the function bodies and build silently.
    missing = PluginRegistration(None, "seo_plugins.trt cannot be imported: No module named 'triton'")
    with pytest.raises(MissingDependencyError, match=re.escape(
            "the model's seo::LocalWindowAttention_no_mask_no_bias nodes need the seo TensorRT plugins, which are not "
            "registered "
            "(seo_plugins.trt cannot be imported: No module named 'triton'); pip install")):
        require_plugins(local_node(), missing)
    require_plugins(local_node(), PluginRegistration("a" * 64))
    plain = helper.make_model(helper.make_graph([], "empty", [], []))
    require_plugins(plain, missing)  # no seo nodes: nothing to register


def test_build_flags_seo_nodes_that_did_not_become_plugin_layers():
    assert plugin_layers_cell(2, 2) == "2 (of 2 seo nodes)"
    assert plugin_layers_cell(0, 0) == "0 (of 0 seo nodes)"
    assert "[bold red]1 (of 2 seo nodes): the others were inlined" in plugin_layers_cell(1, 2)
    assert "not counted" in plugin_layers_cell(None, 2)


# ---- run: engines ---------------------------------------------------------------------------------------------

def test_run_missing_engine(cli):
    assert_one_line_error(cli[1]["run_missing_engine"], "engine missing.engine does not exist")


def test_run_refuses_a_file_that_is_not_an_engine(cli):
    assert_one_line_error(cli[1]["run_not_an_engine"], "garbage.engine is not a TensorRT engine")


@needs_no_tensorrt
def test_run_engine_without_tensorrt_is_one_line(cli):
    folders, results = cli
    result = results["run_without_tensorrt"]
    assert_one_line_error(result, "running a TensorRT engine needs TensorRT and a CUDA GPU", "pip install")
    assert result.returncode == 3
    assert not (folders["engines"] / "out.npz").exists()


@pytest.mark.parametrize("content,fragment", [
    (b"", "is not a TensorRT engine (the file is empty)"),
    (b"PK\x03\x04rest", "(it is a zip or npz archive)"),
    (b'{"profiles": []}', "(it is a JSON file)"),
])
def test_not_an_engine_says_what_it_is(tmp_path, content, fragment):
    (tmp_path / "model.engine").write_bytes(content)
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_engine(tmp_path / "model.engine")


def test_an_onnx_file_is_not_an_engine(onnx_path):
    with pytest.raises(UsageError, match="it is an ONNX model; build an engine with `seo-export build"):
        read_engine(onnx_path)


def test_engine_without_manifest_needs_the_override(tmp_path):
    path = fake_engine(tmp_path, manifest=False)
    with pytest.raises(UsageError, match=r"has no manifest \(model.engine.json\).*--no-manifest-check"):
        read_engine(path)
    assert read_engine(path, check_manifest=False) == (path.read_bytes(), None)


def test_engine_changed_after_its_build_is_refused(tmp_path):
    path = fake_engine(tmp_path)
    path.write_bytes(b"ftrt" + bytes(61))
    with pytest.raises(UsageError, match="not the engine its manifest describes"):
        read_engine(path)


# ---- run: ONNX files -------------------------------------------------------------------------------------------

# These two run in this process, where torch is already imported; the subprocess cases above cover the
# console script's exit codes and one-line errors.

def test_run_onnx_on_ort_saves_outputs(tmp_path, onnx_path, capsys):
    np.savez(tmp_path / "in.npz", input_ids=INPUT_IDS, attention_mask=MASK)
    status = main(["run", str(onnx_path), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz"),
                   "--warmup", "0", "--iterations", "2"])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "last_hidden_state" in stdout and "median ms" in stdout
    word = build_model(CONFIG, seed=0).embeddings.word.weight.detach().numpy()
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["last_hidden_state"], word[INPUT_IDS] * MASK[..., None], rtol=1e-6)
        assert saved["pooler_output"].shape == (2, CONFIG.hidden_size)
    assert listing(tmp_path) == ["in.npz", "out.npz", "tiny.onnx"]  # no temporary file left


def test_run_onnx_on_torch_rebuilds_the_eager_model(onnx_path, capsys):
    status = main(["run", str(onnx_path), "--backend", "torch", "--batch", "2", "--seq-len", "8", "--iterations", "1"])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "on torch, batch 2, seq 8" in stdout and "(2, 8, 16)" in stdout


@pytest.mark.parametrize("prefix", ["", "model."])
def test_torch_model_is_rebuilt_from_the_recorded_seed(tmp_path, prefix):
    model = torch_model_from_onnx(tiny_onnx(tmp_path / "m.onnx", prefix=prefix))
    assert model.config == CONFIG
    expected = build_model(CONFIG, seed=0).state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])


def test_torch_backend_needs_metadata_and_unchanged_weights(tmp_path):
    with pytest.raises(UsageError, match="has no seo_export.config metadata"):
        torch_model_from_onnx(tiny_onnx(tmp_path / "a.onnx", metadata=False))
    path = tiny_onnx(tmp_path / "b.onnx")
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "pooler.weight":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 1.0, init.name))
    onnx.save(model, str(path))
    with pytest.raises(UsageError, match="weight pooler.weight differs from the model it records"):
        torch_model_from_onnx(path)


def test_a_file_that_records_no_weights_takes_them_from_a_checkpoint_and_checks_them(tmp_path):
    """No weights record: refused in one line naming --checkpoint; with a checkpoint, that checkpoint's weights,
    compared with the file's (the file's own weights pass, other weights are refused)."""
    from safetensors.torch import save_file

    path = tiny_onnx(tmp_path / "bare.onnx")
    model = onnx.load(str(path))
    next(p for p in model.metadata_props if p.key == "seo_export.weights").value = "{}"
    onnx.save(model, str(path))
    with pytest.raises(UsageError, match="does not record where its weights came from: pass its weights with "
                                         "--checkpoint"):
        torch_model_from_onnx(path)
    save_file(build_model(CONFIG, seed=0).state_dict(), str(tmp_path / "own.safetensors"))
    rebuilt = torch_model_from_onnx(path, tmp_path / "own.safetensors").state_dict()
    for name, tensor in build_model(CONFIG, seed=0).state_dict().items():
        torch.testing.assert_close(rebuilt[name], tensor)
    save_file(build_model(CONFIG, seed=1).state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(UsageError, match="differs from the model it records"):
        torch_model_from_onnx(path, tmp_path / "other.safetensors")


# ---- run: inputs ----------------------------------------------------------------------------------------------

def test_valid_inputs_become_int64():
    feeds = validate_inputs({"input_ids": np.ones((2, 3), np.int32), "attention_mask": np.ones((2, 3), bool)}, 50)
    assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {"input_ids": (np.int64, (2, 3)),
                                                                 "attention_mask": (np.int64, (2, 3))}


@pytest.mark.parametrize("arrays,fragment", [
    ({}, "the inputs have no input_ids"),
    ({"input_ids": np.ones(3, np.int64)}, "input_ids must be [batch, seq]"),
    ({"input_ids": np.ones((2, 0), np.int64)}, "batch and seq >= 1"),
    ({"input_ids": np.ones((2, 3), np.float32)}, "input_ids must hold integers, got float32"),
    ({"input_ids": np.full((2, 3), 50)}, "token ids in [0, 50), got values from 50 to 50"),
    ({"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((3, 2))}, "attention_mask must have the shape"),
    ({"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((2, 3))}, "must hold integers or booleans"),
    ({"input_ids": np.ones((2, 3), np.int64), "token_type_ids": np.ones((2, 3))}, "unexpected input 'token_type_ids'"),
])
def test_bad_inputs_are_named(arrays, fragment):
    with pytest.raises(UsageError) as info:
        validate_inputs(arrays, 50)
    assert fragment in str(info.value)


def test_input_files_are_never_unpickled(tmp_path):
    np.savez(tmp_path / "evil.npz", input_ids=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UsageError, match="holds Python objects, which are never loaded"):
        read_inputs(tmp_path / "evil.npz")
    np.save(tmp_path / "one.npy", np.ones((1, 2), np.int64))
    with pytest.raises(UsageError, match="is a single array"):
        read_inputs(tmp_path / "one.npy")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(UsageError, match="junk.npz is not an npz archive"):
        read_inputs(tmp_path / "junk.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UsageError, match="broken.npz is not an npz archive"):
        read_inputs(tmp_path / "broken.npz")
    with pytest.raises(UsageError, match="does not exist"):
        read_inputs(tmp_path / "missing.npz")
