"""The engine manifest and the environment it is checked against; what is missing when TensorRT is."""

import json
import sys
import types

import pytest
import torch

from seo_export.backends.tensorrt import loader
from seo_export.backends.tensorrt.manifest import (
    EngineManifest,
    Environment,
    check_compatible,
    fingerprint,
    manifest_path,
    read_manifest,
    sha256_bytes,
    write_manifest,
)
from seo_export.backends.tensorrt.profiles import parse_profile
from seo_export.errors import MissingDependencyError, UsageError

HERE = Environment(tensorrt_version="10.12.0.36", cuda_version="12.8", gpu_name="NVIDIA H200",
                   compute_capability="9.0", plugin_manifest_sha256="a" * 64)


def make_manifest(**environment_changes) -> EngineManifest:
    environment = Environment(**{**HERE.__dict__, **environment_changes})
    return EngineManifest(environment=environment, onnx_sha256="0" * 64, engine_sha256=sha256_bytes(b"ftrt..."),
                          profiles=[parse_profile("batch=1:8:32,seq=1:512:4096")], onnx_file="model.onnx",
                          model_config={"vocab_size": 100})


def test_manifest_sits_beside_the_engine(tmp_path):
    assert manifest_path(tmp_path / "model.engine") == tmp_path / "model.engine.json"


def test_write_then_read_round_trips(tmp_path):
    manifest = make_manifest()
    path = write_manifest(manifest, tmp_path / "model.engine")
    data = json.loads(path.read_text())
    assert data["format"] == "seo-export-engine-manifest"
    assert data["environment"]["gpu_name"] == "NVIDIA H200"
    assert data["profiles"] == [{"batch": [1, 8, 32], "seq": [1, 512, 4096]}]
    assert {"onnx_sha256", "engine_sha256", "seo_export_version", "model_config"} <= set(data)
    assert read_manifest(tmp_path / "model.engine") == manifest


def test_no_manifest_reads_as_none(tmp_path):
    assert read_manifest(tmp_path / "model.engine") is None


@pytest.mark.parametrize("content,fragment", [
    ("{oops", "unreadable"),
    ('{"format": "something else"}', "not an seo-export engine manifest"),
    ('{"format": "seo-export-engine-manifest", "format_version": 99}', "upgrade seo-export"),
    ('{"format": "seo-export-engine-manifest", "format_version": 1}', "missing field 'environment'"),
])
def test_unreadable_manifests_are_one_line_errors(tmp_path, content, fragment):
    manifest_path(tmp_path / "m.engine").write_text(content)
    with pytest.raises(UsageError) as info:
        read_manifest(tmp_path / "m.engine")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_same_machine_is_compatible():
    assert check_compatible(make_manifest(), HERE) is None
    assert check_compatible(make_manifest(cuda_version="12.4"), HERE) is None  # same CUDA major


@pytest.mark.parametrize("change,fragment", [
    ({"tensorrt_version": "10.13.0.35"}, "TensorRT 10.13.0.35 at build, 10.12.0.36 here"),
    ({"gpu_name": "NVIDIA A100-SXM4-80GB"}, "GPU NVIDIA A100-SXM4-80GB at build, NVIDIA H200 here"),
    ({"compute_capability": "8.0"}, "compute capability 8.0 at build, 9.0 here"),
    ({"plugin_manifest_sha256": "b" * 64}, f"seo plugin build {'b' * 12} at build, {'a' * 12} here"),
    ({"plugin_manifest_sha256": None}, f"seo plugin build none at build, {'a' * 12} here"),
    ({"cuda_version": "13.0"}, "CUDA major version 13.0 at build, 12.8 here"),
])
def test_each_mismatch_is_named(change, fragment):
    message = check_compatible(make_manifest(**change), HERE)
    assert fragment in message
    assert message.startswith("the engine does not match this machine")
    assert "seo-export build" in message and "--no-manifest-check" in message and "\n" not in message


def test_several_mismatches_are_listed_together():
    message = check_compatible(make_manifest(tensorrt_version="11.0.0.1", gpu_name="Other"), HERE)
    assert "TensorRT 11.0.0.1" in message and "GPU Other" in message


def test_plugin_fingerprints(tmp_path):
    manifest = {"kernels": [{"name": "local", "ptx": "local.ptx"}], "version": 1}
    reordered = {"version": 1, "kernels": [{"ptx": "local.ptx", "name": "local"}]}
    assert fingerprint(manifest) == fingerprint(reordered)
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    assert fingerprint(path) == fingerprint(str(path)) == sha256_bytes(b"{}")
    assert fingerprint("C" * 64) == "c" * 64
    assert fingerprint(None) is None
    with pytest.raises(TypeError):
        fingerprint(3.5)


# ---- what is missing ---------------------------------------------------------------------------------------

@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_missing_tensorrt_and_gpu_named_in_one_line(no_tensorrt, no_gpu):
    with pytest.raises(MissingDependencyError) as info:
        loader.load_tensorrt("building an engine")
    message = str(info.value)
    assert message.startswith("building an engine needs TensorRT and a CUDA GPU: TensorRT is not installed and ")
    assert 'pip install "seo-export[tensorrt]"' in message and "\n" not in message
    assert not loader.tensorrt_available()


def test_missing_gpu_alone(monkeypatch, no_gpu):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.12.0.36"))
    with pytest.raises(MissingDependencyError) as info:
        loader.load_tensorrt("running a TensorRT engine")
    assert "TensorRT is not installed" not in str(info.value)
    assert "GPU" in str(info.value)


def test_old_tensorrt_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(MissingDependencyError, match=r"TensorRT 8.6.1 is too old \(seo-export needs 10.12"):
        loader.load_tensorrt("building an engine")


def test_a_tensorrt_that_fails_to_load_is_reported(monkeypatch):
    class BrokenWheel:  # a wheel whose native library is missing fails while importing
        def find_spec(self, name, path=None, target=None):
            if name == "tensorrt":
                raise OSError("libnvinfer.so.10: cannot open shared object file")

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenWheel(), *sys.meta_path])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(MissingDependencyError, match="TensorRT cannot be loaded .libnvinfer"):
        loader.load_tensorrt("building an engine")


def test_no_plugin_module_means_no_plugins(monkeypatch):
    monkeypatch.setitem(sys.modules, "seo_plugins.trt", None)
    registration = loader.register_seo_plugins()
    assert registration.manifest_sha256 is None
    assert "seo_plugins.trt cannot be imported" in registration.unavailable_reason


@pytest.mark.parametrize("error", [RuntimeError("CUDA driver version is insufficient\nfor CUDA runtime"),
                                   TypeError("unhashable type: 'list'"), AttributeError()])
def test_any_plugin_registration_error_becomes_one_line(monkeypatch, error):
    # seo_plugins.trt turns errors of TensorRT's plugin API into ImportError; anything that still
    # escapes (or breaks the import itself) is reported where a seo node needs the plugins, not raised.
    module = types.ModuleType("seo_plugins.trt")

    def register_plugins():
        raise error

    module.register_plugins = register_plugins
    monkeypatch.setitem(sys.modules, "seo_plugins.trt", module)
    registration = loader.register_seo_plugins()
    assert registration.manifest_sha256 is None and "\n" not in registration.unavailable_reason
    assert registration.unavailable_reason.startswith(f"seo_plugins.trt.register_plugins() failed "
                                                      f"({type(error).__name__}")
    assert "TensorRT 10.12 or later" in registration.unavailable_reason

    def broken_import(name, *args, **kwargs):
        raise error

    monkeypatch.setattr(loader.importlib, "import_module", broken_import)
    reason = loader.register_seo_plugins().unavailable_reason
    assert reason.startswith(f"importing seo_plugins.trt failed ({type(error).__name__}") and "\n" not in reason


def test_plugin_module_hash_comes_from_what_it_returns(monkeypatch, tmp_path):
    module = types.ModuleType("seo_plugins.trt")
    module.__file__ = str(tmp_path / "trt.py")
    (tmp_path / "trt.py").write_text("# plugins\n")
    monkeypatch.setitem(sys.modules, "seo_plugins.trt", module)
    assert loader.register_seo_plugins().manifest_sha256 == sha256_bytes(b"# plugins\n")  # no register_plugins
    module.register_plugins = lambda: {"kernels": []}
    assert loader.register_seo_plugins().manifest_sha256 == fingerprint({"kernels": []})
