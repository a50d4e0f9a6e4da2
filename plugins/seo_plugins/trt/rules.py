"""What the seo TensorRT plugins check and compute, as plain functions (no TensorRT needed).

The plugin modules (``local_window``, ``landmark``) are thin: their ``tensorrt.plugin``
callbacks call these functions, which take plain values, or duck-typed stand-ins for
``tensorrt.plugin`` objects (the module itself is passed in as ``trtp``), so everything
here is tested on machines without TensorRT.

Node contract (``seo_export.export.translation``): every ``seo::LocalWindowAttention`` /
``seo::LandmarkAttention`` node (op type ``<op>_zero_bias`` where the bias is the zero stand-in,
``PLUGIN_OVERLOADS``) has five inputs q, k, v [B, H, S, D] of T in FP16 or FP32,
key_mask [B, S] BOOL and rel_bias [H, 2K+1] of T (a zero [H, 1] table, K = 0, when the
model has no relative encoding), and the attributes window_left, window_right (or
num_landmarks, pinv_iterations) and scale. The output is like q. Attributes become
compile-time constants of one kernel each; K comes from the bias input's width.
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seo_plugins.aot import KernelConfig, parse_arch
from seo_plugins.errors import UsageError
from seo_plugins.launch import LandmarkLaunch, LocalWindowLaunch
from seo_plugins.op_names import LANDMARK, LOCAL_WINDOW, base_op, op_type_for

NAMESPACE = "seo"
VERSION = "1"
KERNEL_OPS = {LOCAL_WINDOW: "local_window", LANDMARK: "landmark"}
# The overloads whose nodes carry all five inputs (seo_export.export.functions: the default and
# ZERO_BIAS). TensorRT finds a plugin by op type, and each overload has its own (op_names), so the
# plugins are registered under each of these; nodes of the other overloads leave an input out, which
# the plugins cannot take, and TensorRT runs their function bodies.
PLUGIN_OVERLOADS = ("", "zero_bias")
# plugin (ONNX op type) -> KernelConfig.op
OPS = {op_type_for(op, overload): kernel for op, kernel in KERNEL_OPS.items() for overload in PLUGIN_OVERLOADS}
PLUGIN_IDS = tuple(f"{NAMESPACE}::{name}" for name in OPS)
INPUT_NAMES = ("q", "k", "v", "key_mask", "rel_bias")
INPUT_RANKS = (4, 4, 4, 2, 2)
# Attribute names in registration order (the order TensorRT passes them to aot_impl).
ATTRIBUTES = {LOCAL_WINDOW: ("window_left", "window_right", "scale"),
              LANDMARK: ("num_landmarks", "pinv_iterations", "scale")}

# tensorrt.DataType member names (trt.float16 is DataType.HALF) -> kernel dtype
KERNEL_DTYPES = {"HALF": "fp16", "FLOAT": "fp32"}
MASK_TYPE = "BOOL"
# Autotune: q, k, v, rel_bias and the output all FP32 or all FP16; key_mask BOOL; LINEAR layouts.
AUTOTUNE_TYPES = "FP32|FP16, FP32|FP16, FP32|FP16, BOOL, FP32|FP16, FP32|FP16"
AUTOTUNE_LAYOUTS = "LINEAR"
# Windows and landmark counts are int32 constants in index arithmetic next to the sequence
# length; this bound keeps every sum far from overflow.
MAX_ATTRIBUTE = 1 << 24

# Environment: a folder from `seo-export plugins compile` to take PTX from instead of compiling
# while TensorRT builds, and the CUDA arch to compile for (default: the current GPU's).
KERNEL_DIR_ENV = "SEO_PLUGINS_KERNEL_DIR"
ARCH_ENV = "SEO_PLUGINS_ARCH"


class PluginRuleError(UsageError, ValueError):
    """A plugin node or input that the seo plugins cannot run; the message says which and why."""


def plugin_names(op: str) -> tuple[str, ...]:
    """Every plugin name (node op type) ``op`` is registered under."""
    return tuple(name for name in OPS if base_op(name) == op)


def plugin_op(plugin: str) -> str:
    """LOCAL_WINDOW or LANDMARK for any op type of theirs (all overloads share the attributes);
    PluginRuleError for anything else."""
    op = base_op(plugin)
    if op is None:
        raise PluginRuleError(f"unknown seo plugin {plugin!r}; expected one of {', '.join(OPS)}")
    return op


# ----------------------------------------------------------------------------- attributes

# How the plugin callbacks annotate attributes. tensorrt.plugin (10.12 to 11.1, _lib.py,
# _TemplatePluginCreator.create_plugin) converts an ``int``/``float`` attribute with int(f.data) /
# float(f.data), at parse and at engine deserialisation, and onnx-tensorrt hands INT and FLOAT
# attributes over as one-element int32/float32 arrays, which NumPy >= 2.4 refuses to convert so.
# ``npt.NDArray[dtype]`` attributes are converted with f.data.astype(dtype) instead (a bare
# np.ndarray is refused at registration); ``attribute_scalars`` makes them Python numbers.
INT_ATTRIBUTE = npt.NDArray[np.int32]
FLOAT_ATTRIBUTE = npt.NDArray[np.float32]


def attribute_scalars(plugin: str, values) -> dict:
    """A callback's attribute values, in ``ATTRIBUTES`` order (one-element arrays from TensorRT, or plain
    numbers), by name as Python numbers."""
    scalars = {}
    for name, value in zip(ATTRIBUTES[plugin_op(plugin)], values, strict=True):
        array = np.asarray(value)
        if array.size != 1:
            raise PluginRuleError(f"{plugin}: attribute {name} must be a single value, got {array.size}")
        scalars[name] = array.reshape(()).item()
    return scalars


def _int_attribute(plugin: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise PluginRuleError(f"{plugin}: attribute {name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)  # int and numpy integers
    except TypeError:
        raise PluginRuleError(f"{plugin}: attribute {name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise PluginRuleError(f"{plugin}: attribute {name} must be >= {minimum}, got {value}")
    if value > MAX_ATTRIBUTE:
        raise PluginRuleError(f"{plugin}: attribute {name} = {value} is larger than the kernels allow "
                              f"({MAX_ATTRIBUTE})")
    return int(value)


def _scale(plugin: str, value) -> float:
    if isinstance(value, bool):
        raise PluginRuleError(f"{plugin}: attribute scale must be a float, got {value!r}")
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise PluginRuleError(f"{plugin}: attribute scale must be a float, got {value!r}") from None
    if not math.isfinite(scale):
        raise PluginRuleError(f"{plugin}: attribute scale must be finite, got {scale}")
    return scale


def check_local_window_attributes(window_left, window_right, scale) -> dict:
    """Checked attributes of a LocalWindowAttention node: windows >= 0, a finite scale."""
    return {"window_left": _int_attribute(LOCAL_WINDOW, "window_left", window_left, 0),
            "window_right": _int_attribute(LOCAL_WINDOW, "window_right", window_right, 0),
            "scale": _scale(LOCAL_WINDOW, scale)}


def check_landmark_attributes(num_landmarks, pinv_iterations, scale) -> dict:
    """Checked attributes of a LandmarkAttention node: landmarks > 0, iterations >= 0, a finite scale."""
    return {"num_landmarks": _int_attribute(LANDMARK, "num_landmarks", num_landmarks, 1),
            "pinv_iterations": _int_attribute(LANDMARK, "pinv_iterations", pinv_iterations, 0),
            "scale": _scale(LANDMARK, scale)}


def check_attributes(plugin: str, attrs: dict) -> dict:
    """The node's own attributes, checked; others (plugin_namespace, plugin_version, aot) are ignored."""
    op = plugin_op(plugin)
    missing = [name for name in ATTRIBUTES[op] if name not in attrs]
    if missing:
        raise PluginRuleError(f"{plugin}: missing attribute{'s' * (len(missing) > 1)} {', '.join(missing)} "
                              f"(it needs {', '.join(ATTRIBUTES[op])})")
    values = [attrs[name] for name in ATTRIBUTES[op]]
    check = check_local_window_attributes if op == LOCAL_WINDOW else check_landmark_attributes
    return check(*values)


def check_plugin_identity(plugin: str, attrs: dict) -> None:
    """plugin_namespace / plugin_version, when a node carries them, must name these plugins."""
    namespace = attrs.get("plugin_namespace", NAMESPACE)
    version = attrs.get("plugin_version", VERSION)
    namespace = namespace.decode() if isinstance(namespace, bytes) else str(namespace)
    version = version.decode() if isinstance(version, bytes) else str(version)
    if namespace.rstrip("\0") != NAMESPACE:
        raise PluginRuleError(f"{plugin}: plugin_namespace is {namespace!r}; the seo plugins are in {NAMESPACE!r}")
    if version.rstrip("\0") != VERSION:
        raise PluginRuleError(f"{plugin}: plugin_version is {version!r}; this seo-export provides version {VERSION}")


# ----------------------------------------------------------------------------- shapes and types


def check_ranks(plugin: str, ranks) -> None:
    """q, k, v of rank 4 ([B, H, S, D]), key_mask and rel_bias of rank 2."""
    ranks = list(ranks)
    if len(ranks) != len(INPUT_NAMES):
        raise PluginRuleError(f"{plugin} takes {len(INPUT_NAMES)} inputs ({', '.join(INPUT_NAMES)}), got {len(ranks)}")
    layouts = ("[B, H, S, D]",) * 3 + ("[B, S]", "[H, 2K+1]")
    for name, rank, expected, layout in zip(INPUT_NAMES, ranks, INPUT_RANKS, layouts):
        if rank != expected:
            raise PluginRuleError(f"{plugin}: input {name} must be {layout} (rank {expected}), got rank {rank}")


def type_name(dtype) -> str:
    """``trt.float16`` -> ``HALF``; strings pass through upper-cased."""
    return dtype.upper() if isinstance(dtype, str) else getattr(dtype, "name", str(dtype))


def check_types(plugin: str, dtypes) -> str:
    """The kernel dtype (``fp16`` / ``fp32``) for input types q, k, v, key_mask, rel_bias.

    q, k, v and rel_bias share one type, FP16 or FP32; key_mask is BOOL.
    """
    names = [type_name(t) for t in dtypes]
    if len(names) != len(INPUT_NAMES):
        raise PluginRuleError(f"{plugin} takes {len(INPUT_NAMES)} inputs ({', '.join(INPUT_NAMES)}), got {len(names)}")
    q, k, v, mask, bias = names
    if q not in KERNEL_DTYPES:
        raise PluginRuleError(f"{plugin}: q must be FP16 (HALF) or FP32 (FLOAT), got {q}")
    others = {"k": k, "v": v, "rel_bias": bias}
    wrong = {name: t for name, t in others.items() if t != q}
    if wrong:
        listed = ", ".join(f"{name} {t}" for name, t in wrong.items())
        raise PluginRuleError(f"{plugin}: q, k, v and rel_bias must share one type; q is {q} but {listed}")
    if mask != MASK_TYPE:
        raise PluginRuleError(f"{plugin}: key_mask must be BOOL, got {mask}")
    return KERNEL_DTYPES[q]


def bias_max_distance(width: int) -> int:
    """K of a [H, 2K+1] relative-bias table (the exporter's zero [H, 1] table gives K = 0)."""
    width = int(width)
    if width < 1 or width % 2 != 1:
        raise PluginRuleError(f"rel_bias must be [H, 2K+1] with an odd width >= 1, got width {width}")
    return (width - 1) // 2


def static_dim(value: int, minimum: int | None = None, maximum: int | None = None, what: str = "dimension") -> int:
    """A dimension fixed at build time: ``value`` when known (>= 0), else min when min == max."""
    if value is not None and int(value) >= 0:
        return int(value)
    if minimum is not None and maximum is not None and int(minimum) == int(maximum) >= 0:
        return int(minimum)
    if minimum is None or maximum is None:
        raise PluginRuleError(f"{what} must be known when the engine is built (it is a kernel constant)")
    raise PluginRuleError(f"{what} must be fixed when the engine is built (it is a kernel constant), but it "
                          f"ranges over [{minimum}, {maximum}] in the optimization profile")


def desc_static_dim(desc, index: int, what: str) -> int:
    """``static_dim`` of a ``tensorrt.plugin.TensorDesc`` inside aot_impl: a constant shape
    expression, a known concrete dim, or a dynamic dim whose profile min equals its max."""
    expr = desc.shape_expr[index]
    try:
        if not getattr(expr, "is_fake", False) and expr.is_constant:
            return int(expr.constant_value())
    except (AttributeError, RuntimeError):
        pass
    minimum = maximum = value = None
    if getattr(desc, "has_shape", False):
        shape = desc.shape
        value = shape[index]
        if value < 0:
            minimum, maximum = shape.min[index], shape.max[index]
    return static_dim(value, minimum, maximum, what)


# ----------------------------------------------------------------------------- kernel configurations


def kernel_config(plugin: str, dtype: str, head_dim: int, bias_width: int, attrs: dict) -> KernelConfig:
    """The one kernel a plugin node runs: op, dtype, head dim, K from the bias width, attributes.

    Nodes always carry a mask and a bias input, so both are compiled in.
    """
    values = check_attributes(plugin, attrs)
    if dtype not in KERNEL_DTYPES.values():
        raise PluginRuleError(f"{plugin}: the plugins run FP16 or FP32, got {dtype}")
    head_dim = int(head_dim)
    if head_dim <= 0:
        raise PluginRuleError(f"{plugin}: head dim must be > 0, got {head_dim}")
    common = dict(dtype=dtype, head_dim=head_dim, has_mask=True, has_bias=True,
                  max_distance=bias_max_distance(bias_width), scale=values.pop("scale"))
    return KernelConfig(KERNEL_OPS[plugin_op(plugin)], **common, **values)


def kernel_name(config: KernelConfig, arch: str) -> str:
    """The manifest entry name ``compile_kernel`` gives ``config`` for ``arch``."""
    return f"{config.name}_sm{parse_arch(arch)}"


def arch_for(capability=None, env: str | None = None) -> str:
    """``sm_XY`` to compile for: ``env`` (SEO_PLUGINS_ARCH) if set, else the GPU's (major, minor)."""
    if env:
        return f"sm_{parse_arch(env)}"
    if capability is None:
        raise PluginRuleError(f"no CUDA GPU to compile the seo kernels for; set {ARCH_ENV}=sm_XY")
    major, minor = capability
    return f"sm_{parse_arch(f'{major}{minor}')}"


def current_arch() -> str:
    """The arch TensorRT builds for: SEO_PLUGINS_ARCH if set, else the current CUDA GPU's."""
    env = os.environ.get(ARCH_ENV)
    if env:
        return arch_for(env=env)
    capability = None
    try:
        import torch

        if torch.cuda.is_available():
            capability = torch.cuda.get_device_capability(torch.cuda.current_device())
    except ImportError:
        pass
    return arch_for(capability)


# ----------------------------------------------------------------------------- launch parameters


def launch_from_entry(entry: dict):
    """The tiles a manifest entry was compiled with (``LocalWindowLaunch`` or ``LandmarkLaunch``)."""
    tiles = entry["grid"]["launch"]
    cls = LocalWindowLaunch if entry["config"]["op"] == "local_window" else LandmarkLaunch
    return cls(**tiles)


def grid(entry: dict, batch, heads, seq, cdiv):
    """The launch grid of ``entry`` over shapes that may be ints, manifest symbols or TensorRT
    shape expressions (pass ``trtp.cdiv`` for those)."""
    return launch_from_entry(entry).grid(batch, heads, seq, cdiv)


def scalar_args(entry: dict, shapes: dict) -> list:
    """The kernel's scalar arguments in PTX order, each ``shapes[expr]`` (expr "H", "S", ...)."""
    return [shapes[a["expr"]] for a in entry["args"] if a["role"] == "scalar"]


def check_launchable(entry: dict) -> None:
    """TensorRT passes inputs, scalars and outputs only: a kernel that needs scratch memory cannot run."""
    needs = [f"{a['name']} ({a['bytes']} bytes)" for a in entry["args"] if a["role"] == "scratch" and a["bytes"]]
    if needs:
        raise PluginRuleError(f"{entry['kernel']} needs Triton scratch memory ({', '.join(needs)}), which "
                              f"TensorRT's AOT launcher does not provide")


def tensor_args(entry: dict) -> list[dict]:
    """The arguments TensorRT passes (no scratch pointers): inputs, scalars, outputs in PTX order."""
    args = [a for a in entry["args"] if a["role"] != "scratch"]
    roles = [a["role"] for a in args]
    expected = sorted(roles, key=["input", "scalar", "output"].index)
    if roles != expected:
        raise PluginRuleError(f"{entry['kernel']}: parameters are not in TensorRT's order (inputs, scalars, outputs)")
    return args


def find_entry(manifest: dict, name: str) -> dict | None:
    return next((e for e in manifest["kernels"] if e["name"] == name), None)


@functools.lru_cache(maxsize=None)
def tensorrt_kernel(config: KernelConfig, arch: str, kernel_dir: str | None = None) -> tuple[str, str, dict]:
    """(PTX entry name, PTX without unused scratch parameters, manifest entry) for ``config`` on ``arch``.

    Taken from ``kernel_dir`` (``seo-export plugins compile`` output) when it holds the kernel,
    else compiled now with Triton (no GPU needed). Cached per process: TensorRT asks once per
    type combination and tactic.
    """
    from seo_plugins.aot import compile_kernel, drop_unused_scratch_params, load_manifest

    name = kernel_name(config, arch)
    entry = ptx = None
    if kernel_dir:
        entry = find_entry(load_manifest(kernel_dir), name)
        if entry is not None:
            ptx = (Path(kernel_dir) / entry["ptx"]).read_text()
    if entry is None:
        compiled = compile_kernel(config, arch)
        entry, ptx = compiled.entry, compiled.ptx
    check_launchable(entry)
    tensor_args(entry)
    return entry["kernel"], drop_unused_scratch_params(ptx, entry), entry


def aot_launch(trtp, entry: dict, q_desc) -> tuple:
    """(KernelLaunchParams, SymIntExprs) of ``entry`` for TensorRT: the grid as shape expressions of
    q's [B, H, S], threads = num_warps * 32, the compiled shared memory, and the scalar arguments."""
    batch, heads, seq = (q_desc.shape_expr[i] for i in range(3))
    gx, gy, gz = grid(entry, batch, heads, seq, trtp.cdiv)
    params = trtp.KernelLaunchParams()
    params.grid_x, params.grid_y, params.grid_z = gx, gy, gz
    params.block_x, params.block_y, params.block_z = entry["block"]
    params.shared_mem = entry["shared_mem_bytes"]
    scalars = scalar_args(entry, {"B": batch, "H": heads, "S": seq})
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(s) for s in scalars])
    return params, extra


def aot_impl_result(trtp, plugin: str, inputs, attrs: dict, arch: str, kernel_dir: str | None = None):
    """Everything an ``aot_impl`` returns: (kernel name, PTX bytes, KernelLaunchParams, SymIntExprs).

    ``inputs`` are the five TensorDescs (types and shapes set): q's type picks FP16/FP32,
    its last dim the head dim, rel_bias's width K; all are build-time constants. A kernel needing
    more than 48 KiB of shared memory is refused: TensorRT's launcher does not opt in to more.
    """
    from seo_plugins.ptxas import aot_shared_problem

    q, bias = inputs[0], inputs[4]
    dtype = check_types(plugin, [t.dtype for t in inputs])
    head_dim = desc_static_dim(q, 3, f"{plugin}: the head dim (q.shape[3])")
    width = desc_static_dim(bias, 1, f"{plugin}: the rel_bias width (2K+1)")
    config = kernel_config(plugin, dtype, head_dim, width, attrs)
    name, ptx, entry = tensorrt_kernel(config, arch, kernel_dir)
    problem = aot_shared_problem(entry)
    if problem:
        raise PluginRuleError(f"{plugin}: {problem}")
    params, extra = aot_launch(trtp, entry, q)
    return name, ptx.encode(), params, extra


# ----------------------------------------------------------------------------- JIT path: TensorRT tensors as torch


# tensorrt.DataType name -> __cuda_array_interface__ typestr. The mask is read as int8 (the
# kernels load one byte per token), so no conversion copy is needed.
TYPESTRS = {"HALF": "<f2", "FLOAT": "<f4", "BOOL": "|i1"}


def cuda_array_interface(ptr: int, shape, strides, dtype) -> dict:
    """A v3 ``__cuda_array_interface__`` for a TensorRT tensor (strides in elements, as TensorRT gives them)."""
    name = type_name(dtype)
    if name not in TYPESTRS:
        raise PluginRuleError(f"the seo plugins take FP16, FP32 and BOOL tensors, got {name}")
    typestr = TYPESTRS[name]
    itemsize = int(typestr[2:])
    shape = tuple(int(d) for d in shape)
    strides = None if strides is None else tuple(int(s) * itemsize for s in strides)
    # stream None: the caller already runs on TensorRT's stream, no synchronisation is needed.
    return {"shape": shape, "typestr": typestr, "data": (int(ptr), False), "strides": strides,
            "version": 3, "stream": None}


class CudaArray:
    """Something ``torch.as_tensor(..., device="cuda")`` reads through ``__cuda_array_interface__``."""

    def __init__(self, interface: dict):
        self.__cuda_array_interface__ = interface


def as_cuda_array(tensor) -> CudaArray:
    """A ``tensorrt.plugin.Tensor`` as a CudaArray (BF16 unsupported: TensorRT's own interface refuses it)."""
    strides = getattr(tensor, "strides", None)
    return CudaArray(cuda_array_interface(tensor.data_ptr, tuple(tensor.shape),
                                          None if strides is None else tuple(strides), tensor.dtype))


def run_jit(stream: int, inputs, output, launch) -> None:
    """The JIT fallback: view TensorRT's tensors as torch CUDA tensors and call
    ``launch(out, q, k, v, key_mask, rel_bias)`` on TensorRT's stream."""
    import torch

    tensors = [torch.as_tensor(as_cuda_array(t), device="cuda") for t in (*inputs, output)]
    if tensors[-1].numel() == 0:
        return
    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        launch(tensors[-1], *tensors[:-1])


def describe_output(plugin: str, inputs, attrs: dict):
    """The register callback: check attributes, ranks and types, and describe the output (like q)."""
    check_attributes(plugin, attrs)
    check_ranks(plugin, [t.ndim for t in inputs])
    check_types(plugin, [t.dtype for t in inputs])
    return inputs[0].like()


# ----------------------------------------------------------------------------- registration


def is_registered(trtp, plugin: str) -> bool:
    """True when ``seo::plugin`` is already defined in ``tensorrt.plugin`` (registration is idempotent)."""
    try:
        return hasattr(getattr(trtp.op, NAMESPACE), plugin)
    except AttributeError:  # tensorrt.plugin.op raises AttributeError for an unknown namespace
        return False


def register_each(trtp, op: str, define) -> bool:
    """``define(plugin_id)`` for each name of ``op`` not yet registered; False when none was new."""
    new = [name for name in plugin_names(op) if not is_registered(trtp, name)]
    for name in new:
        define(f"{NAMESPACE}::{name}")
    return bool(new)


PLUGIN_SOURCES = ("launch.py", "aot.py", "kernels/*.py", "trt/*.py")


def plugin_build_info(root: str | os.PathLike | None = None, triton_version: str | None = None) -> dict:
    """What identifies a plugin build (its sha256 goes into engine manifests): plugin ids and
    version, the Triton version that compiles the kernels, and the hash of every source file."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    if triton_version is None:
        try:
            from importlib.metadata import version

            triton_version = version("triton")
        except Exception:  # not installed as a distribution
            triton_version = "unknown"
    sources = {}
    for pattern in PLUGIN_SOURCES:
        for path in sorted(root.glob(pattern)):
            sources[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"format": 1, "plugins": {pid: VERSION for pid in PLUGIN_IDS}, "triton": triton_version,
            "sources": sources}

