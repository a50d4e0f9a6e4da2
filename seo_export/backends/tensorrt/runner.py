"""Run a TensorRT engine with torch CUDA tensors for I/O and ``execute_async_v3`` (after Polygraphy's TrtRunner).

Before TensorRT sees the file, the runner checks that it is an engine and that its
manifest matches this machine: a foreign engine otherwise fails deep inside
TensorRT, or loads and gives corrupt-looking outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seo_export.backends.base import Runner
from seo_export.backends.tensorrt.loader import (
    PluginRegistration,
    current_environment,
    load_tensorrt,
    make_logger,
    register_plugins,
    register_seo_plugins,
)
from seo_export.export.inspect import load_onnx
from seo_export.backends.tensorrt.manifest import (
    EngineManifest,
    check_compatible,
    manifest_path,
    read_manifest,
    sha256_bytes,
)
from seo_export.backends.tensorrt.profiles import Profile, choose_profile
from seo_export.errors import UsageError

# Serialized TensorRT plans start with these bytes (torch-tensorrt tells plans apart the same way).
ENGINE_MAGIC = b"ftrt"
NO_CHECK_HINT = "pass --no-manifest-check to try it anyway"


def _what_it_is(path: Path, data: bytes) -> str:
    """A hint for a file that is not an engine, for the common mix-ups."""
    if not data:
        return " (the file is empty)"
    if data.startswith(b"PK"):
        return " (it is a zip or npz archive)"
    if data.lstrip()[:1] in (b"{", b"["):
        return " (it is a JSON file)"
    try:
        load_onnx(path)
    except UsageError:
        return ""
    return f": it is an ONNX model; build an engine with `seo-export build {path}`, or run it with --backend ort"


def read_engine(path: str | os.PathLike, check_manifest: bool = True) -> tuple[bytes, EngineManifest | None]:
    """The engine's bytes and manifest, refusing what is not an engine or (when checking) not ours."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"engine {path} does not exist")
    data = path.read_bytes()
    try:
        manifest = read_manifest(path)
    except UsageError:
        if check_manifest:
            raise
        manifest = None
    vouched = manifest is not None and manifest.engine_sha256 == sha256_bytes(data)
    if not vouched and not data.startswith(ENGINE_MAGIC):
        raise UsageError(f"{path} is not a TensorRT engine{_what_it_is(path, data)}")
    if check_manifest and manifest is None:
        raise UsageError(f"{path} has no manifest ({manifest_path(path).name}) saying what it was built for; "
                         f"build engines with `seo-export build`, or {NO_CHECK_HINT}")
    if check_manifest and not vouched:
        raise UsageError(f"{path} is not the engine its manifest describes (it changed after the build); "
                         f"rebuild it with `seo-export build`, or {NO_CHECK_HINT}")
    return data, manifest


def torch_dtype(trt, dtype):
    """torch dtype for a TensorRT DataType; members missing in a TensorRT version are skipped."""
    import torch

    pairs = (("FLOAT", torch.float32), ("HALF", torch.float16), ("BF16", torch.bfloat16), ("INT8", torch.int8),
             ("INT32", torch.int32), ("INT64", torch.int64), ("BOOL", torch.bool), ("UINT8", torch.uint8))
    table = {getattr(trt.DataType, name): value for name, value in pairs if hasattr(trt.DataType, name)}
    if dtype not in table:
        raise UsageError(f"engine I/O of type {dtype} has no torch equivalent")
    return table[dtype]


class TrtRunner(Runner):
    name = "trt"

    def __init__(self, engine_path: str | os.PathLike, check_manifest: bool = True,
                 plugin_registrar: Callable[[], PluginRegistration] | None = register_seo_plugins,
                 device: int = 0, verbose: bool = False):
        super().__init__()
        self.engine_path = Path(engine_path)
        self.check_manifest = check_manifest
        self.plugin_registrar = plugin_registrar
        self.device_index = device
        self.verbose = verbose
        self.manifest: EngineManifest | None = None
        self.profiles: list[Profile] = []

    def activate_impl(self) -> None:
        import torch

        data, self.manifest = read_engine(self.engine_path, self.check_manifest)
        trt = load_tensorrt("running a TensorRT engine")
        self.trt, self.logger = trt, make_logger(trt, self.verbose)
        # JIT plugins must be registered before deserializing an engine that uses them.
        plugins = register_plugins(self.plugin_registrar)
        trt.init_libnvinfer_plugins(self.logger, "")
        if self.check_manifest:
            problem = check_compatible(self.manifest, current_environment(trt, plugins, self.device_index))
            if problem:
                raise UsageError(f"{self.engine_path}: {problem}")

        self.device = torch.device("cuda", self.device_index)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise UsageError(f"TensorRT cannot load {self.engine_path}: {self._first_error()}")
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise UsageError(f"TensorRT cannot create an execution context: {self._first_error()}")
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.profiles = [Profile.from_shapes(*self.engine.get_tensor_profile_shape("input_ids", i))
                         for i in range(self.engine.num_optimization_profiles)]
        self.profile_index = 0  # a new context starts on profile 0

    def _first_error(self) -> str:
        errors = self.logger.errors
        return errors[0].splitlines()[0] if errors else "no error logged (rerun with --verbose)"

    def _select_profile(self, batch: int, seq: int) -> None:
        index = choose_profile(self.profiles, batch, seq)
        if index != self.profile_index:
            if not self.context.set_optimization_profile_async(index, self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT cannot switch to profile {index}: {self._first_error()}")
            self.profile_index = index

    def _bind_inputs(self, feeds: dict[str, np.ndarray]) -> dict:
        import torch

        input_ids = feeds["input_ids"]
        tensors = {}
        for name in self.input_names:
            array = feeds.get(name)
            if array is None and name == "attention_mask":
                array = np.ones_like(input_ids)  # no mask: every token is real
            if array is None:
                raise UsageError(f"the engine needs an input named {name!r}")
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device, self.dtypes[name])
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise UsageError(f"the engine refuses {name} of shape {tuple(tensor.shape)}: {self._first_error()}")
            self.context.set_tensor_address(name, tensor.data_ptr())
            tensors[name] = tensor
        return tensors

    def _bind_outputs(self) -> dict:
        import torch

        tensors = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise UsageError(f"output {name} has a data-dependent shape {shape}, which this runner does not handle")
            tensors[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, tensors[name].data_ptr())
        return tensors

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        batch, seq = feeds["input_ids"].shape
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self._select_profile(batch, seq)
            inputs = self._bind_inputs(feeds)  # kept alive until the stream is done with them
            outputs = self._bind_outputs()
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT inference failed: {self._first_error()}")
            self.stream.synchronize()
        del inputs
        return {name: (t.float() if t.is_floating_point() else t).cpu().numpy() for name, t in outputs.items()}

    def deactivate_impl(self) -> None:
        # Context before engine before runtime: each depends on the next.
        self.context = self.engine = self.runtime = None
