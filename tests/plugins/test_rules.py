"""The TensorRT plugins' rules and glue without TensorRT: attributes, shapes and types, kernel
configurations, launch parameters, the aot_impl result, the JIT launch, and registration
through a stand-in for ``tensorrt.plugin`` that checks the signatures it documents."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # as in the other kernel tests, before Triton is imported

import dataclasses  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import typing  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from seo_export import ops  # noqa: E402
from seo_export.errors import MissingDependencyError, UsageError  # noqa: E402
from seo_plugins.aot import KernelConfig, ptx_entry_params  # noqa: E402
from seo_plugins.launch import Symbol, eval_shape_expr, symbolic_cdiv  # noqa: E402
from seo_plugins.trt import landmark, local_window, rules  # noqa: E402

LOCAL, LANDMARK = rules.LOCAL_WINDOW, rules.LANDMARK


# ----------------------------------------------------------------------------- attributes


def test_valid_attributes_are_normalised():
    assert rules.check_local_window_attributes(np.int64(4), 0, np.float32(0.25)) == dict(
        window_left=4, window_right=0, scale=0.25)
    assert rules.check_landmark_attributes(64, 0, 0.125) == dict(num_landmarks=64, pinv_iterations=0, scale=0.125)
    assert rules.check_attributes(LOCAL, dict(window_left=1, window_right=2, scale=1.0, plugin_namespace="seo",
                                              plugin_version="1", aot=1))["window_right"] == 2


@pytest.mark.parametrize("plugin,attrs,message", [
    (LOCAL, dict(window_left=-1, window_right=0, scale=0.1), "window_left must be >= 0, got -1"),
    (LOCAL, dict(window_left=0, window_right=-3, scale=0.1), "window_right must be >= 0, got -3"),
    (LOCAL, dict(window_left=1.5, window_right=0, scale=0.1), "window_left must be an integer"),
    (LOCAL, dict(window_left=True, window_right=0, scale=0.1), "window_left must be an integer"),
    (LOCAL, dict(window_left=1 << 30, window_right=0, scale=0.1), "larger than the kernels allow"),
    (LOCAL, dict(window_left=1, window_right=0, scale=float("nan")), "scale must be finite"),
    (LOCAL, dict(window_left=1, window_right=0, scale="big"), "scale must be a float"),
    (LOCAL, dict(window_left=1, scale=0.1), "missing attribute window_right"),
    (LANDMARK, dict(num_landmarks=0, pinv_iterations=6, scale=0.1), "num_landmarks must be >= 1, got 0"),
    (LANDMARK, dict(num_landmarks=8, pinv_iterations=-1, scale=0.1), "pinv_iterations must be >= 0"),
    (LANDMARK, dict(scale=0.1), "missing attributes num_landmarks, pinv_iterations"),
    ("DenseAttention", dict(scale=0.1), "unknown seo plugin 'DenseAttention'"),
])
def test_bad_attributes_say_which_and_why(plugin, attrs, message):
    with pytest.raises(rules.PluginRuleError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        rules.check_attributes(plugin, attrs)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_plugin_identity():
    rules.check_plugin_identity(LOCAL, {"plugin_namespace": b"seo", "plugin_version": "1\0"})
    rules.check_plugin_identity(LOCAL, {})
    with pytest.raises(rules.PluginRuleError, match="plugin_namespace is 'other'"):
        rules.check_plugin_identity(LOCAL, {"plugin_namespace": "other"})
    with pytest.raises(rules.PluginRuleError, match="plugin_version is '2'"):
        rules.check_plugin_identity(LOCAL, {"plugin_version": "2"})


# ----------------------------------------------------------------------------- shapes and types


class DType:
    """Stands in for tensorrt.DataType members (pybind enums have .name)."""

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, DType) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


HALF, FLOAT, BOOL, BF16 = (DType(n) for n in ("HALF", "FLOAT", "BOOL", "BF16"))


@pytest.mark.parametrize("float_type,expected", [(HALF, "fp16"), (FLOAT, "fp32")])
def test_fp16_and_fp32_with_a_bool_mask_are_the_combinations(float_type, expected):
    assert rules.check_types(LOCAL, [float_type] * 3 + [BOOL, float_type]) == expected
    name = float_type.name.lower()
    assert rules.check_types(LANDMARK, [name] * 3 + ["bool", name]) == expected, "type names as strings too"


@pytest.mark.parametrize("types_,message", [
    ([BF16, BF16, BF16, BOOL, BF16], "q must be FP16 .HALF. or FP32 .FLOAT., got BF16"),
    ([HALF, FLOAT, HALF, BOOL, HALF], "q is HALF but k FLOAT"),
    ([FLOAT, FLOAT, FLOAT, BOOL, HALF], "q is FLOAT but rel_bias HALF"),
    ([HALF, HALF, HALF, HALF, HALF], "key_mask must be BOOL, got HALF"),
    ([HALF, HALF, HALF, BOOL], "takes 5 inputs"),
])
def test_type_errors(types_, message):
    with pytest.raises(rules.PluginRuleError, match=message):
        rules.check_types(LOCAL, types_)


def test_ranks():
    rules.check_ranks(LOCAL, [4, 4, 4, 2, 2])
    with pytest.raises(rules.PluginRuleError, match=r"key_mask must be \[B, S\] \(rank 2\), got rank 3"):
        rules.check_ranks(LOCAL, [4, 4, 4, 3, 2])
    with pytest.raises(rules.PluginRuleError, match=r"q must be \[B, H, S, D\]"):
        rules.check_ranks(LANDMARK, [3, 4, 4, 2, 2])


@pytest.mark.parametrize("width,k", [(1, 0), (5, 2), (65, 32)])
def test_k_comes_from_the_bias_width(width, k):
    assert rules.bias_max_distance(width) == k


@pytest.mark.parametrize("width", [0, 2, 64])
def test_even_or_empty_bias_widths_are_refused(width):
    with pytest.raises(rules.PluginRuleError, match="odd width"):
        rules.bias_max_distance(width)


def test_static_dims():
    assert rules.static_dim(64) == 64
    assert rules.static_dim(-1, 5, 5) == 5
    with pytest.raises(rules.PluginRuleError, match=r"head dim must be fixed .* \[16, 128\]"):
        rules.static_dim(-1, 16, 128, what="head dim")


# ----------------------------------------------------------------------------- kernel configurations


def test_node_attributes_map_to_one_kernel_config():
    config = rules.kernel_config(LOCAL, "fp16", 64, 65, dict(window_left=64, window_right=64, scale=0.125))
    assert config == KernelConfig("local_window", dtype="fp16", head_dim=64, window_left=64, window_right=64,
                                  has_mask=True, has_bias=True, max_distance=32, scale=0.125)
    assert config.name == "local_window_fp16_d64_w64_64_mask_bias32", "the default scale is not spelled out"
    config = rules.kernel_config(LANDMARK, "fp32", 16, 1, dict(num_landmarks=8, pinv_iterations=3, scale=0.3))
    assert (config.op, config.num_landmarks, config.pinv_iterations, config.max_distance) == ("landmark", 8, 3, 0)
    assert config.name.startswith("landmark_fp32_d16_l8_i3_mask_bias0_s")
    with pytest.raises(rules.PluginRuleError, match="FP16 or FP32, got bf16"):
        rules.kernel_config(LOCAL, "bf16", 64, 1, dict(window_left=1, window_right=1, scale=0.1))
    with pytest.raises(rules.PluginRuleError, match="odd width"):
        rules.kernel_config(LOCAL, "fp16", 64, 4, dict(window_left=1, window_right=1, scale=0.1))


def test_arch():
    assert rules.arch_for((9, 0)) == "sm_90" and rules.arch_for((8, 6)) == "sm_86"
    assert rules.arch_for((9, 0), env="sm_80") == "sm_80"
    with pytest.raises(rules.PluginRuleError, match="SEO_PLUGINS_ARCH"):
        rules.arch_for(None)
    with pytest.raises(UsageError):
        rules.arch_for((7, 5))


def test_current_arch_follows_the_environment(monkeypatch):
    monkeypatch.setenv(rules.ARCH_ENV, "sm_90a")
    assert rules.current_arch() == "sm_90"
    monkeypatch.delenv(rules.ARCH_ENV)
    if not torch.cuda.is_available():
        with pytest.raises(rules.PluginRuleError, match="no CUDA GPU"):
            rules.current_arch()


# ----------------------------------------------------------------------------- launch parameters


def fake_entry(op="local_window", launch=None, scratch=(0, 0)):
    launch = launch or dict(block_m=16, block_n=16, block_d=16, num_warps=1, num_stages=2)
    args = [{"name": n, "role": "input", "type": "*fp16"} for n in ("q", "k", "v", "key_padding_mask", "rel_bias")]
    args += [{"name": "num_heads", "role": "scalar", "type": "i32", "expr": "H"},
             {"name": "seq_len", "role": "scalar", "type": "i32", "expr": "S"},
             {"name": "out", "role": "output", "type": "*fp16"}]
    args += [{"name": n, "role": "scratch", "type": "*i8", "bytes": b}
             for n, b in zip(("global_scratch", "profile_scratch"), scratch)]
    return {"kernel": "k", "config": {"op": op}, "args": args, "grid": {"launch": launch}}


@pytest.mark.parametrize("op", ["local_window", "landmark"])
def test_grid_is_the_same_over_ints_symbols_and_expressions(op):
    launch = dict(block_m=32, block_n=16, block_d=64, num_warps=2, num_stages=2) if op == "local_window" else \
        dict(block_s=64, block_l=16, block_d=64, num_warps=4, num_stages=1)
    entry = fake_entry(op, launch)
    expressions = [str(e) for e in rules.grid(entry, Symbol("B"), Symbol("H"), Symbol("S"), symbolic_cdiv)]
    for shapes in (dict(B=1, H=1, S=1), dict(B=2, H=3, S=37), dict(B=4, H=16, S=32768)):
        ints = rules.grid(entry, shapes["B"], shapes["H"], shapes["S"], lambda a, b: -(-a // b))
        assert list(ints) == [eval_shape_expr(e, shapes) for e in expressions]
    if op == "local_window":
        assert expressions == ["cdiv(S, 32)", "B * H", "1"]
    else:
        assert expressions == ["B * H", "1", "1"]


def test_scalars_follow_ptx_order_and_scratch_is_refused():
    entry = fake_entry()
    assert rules.scalar_args(entry, {"B": "b", "H": "h", "S": "s"}) == ["h", "s"]
    assert [a["name"] for a in rules.tensor_args(entry)][-3:] == ["num_heads", "seq_len", "out"]
    rules.check_launchable(entry)
    with pytest.raises(rules.PluginRuleError, match=r"global_scratch \(256 bytes\)"):
        rules.check_launchable(fake_entry(scratch=(256, 0)))
    shuffled = fake_entry()
    shuffled["args"].insert(0, shuffled["args"].pop(7))
    with pytest.raises(rules.PluginRuleError, match="TensorRT's order"):
        rules.tensor_args(shuffled)


def test_cuda_array_interface():
    cai = rules.cuda_array_interface(4096, (2, 3, 5, 8), (120, 40, 8, 1), HALF)
    assert cai == {"shape": (2, 3, 5, 8), "typestr": "<f2", "data": (4096, False), "strides": (240, 80, 16, 2),
                   "version": 3, "stream": None}
    assert rules.cuda_array_interface(0, (2, 7), None, BOOL)["typestr"] == "|i1", "the mask is read as int8"
    assert rules.cuda_array_interface(0, (2,), (1,), "FLOAT")["strides"] == (4,)
    with pytest.raises(rules.PluginRuleError, match="got BF16"):
        rules.cuda_array_interface(0, (1,), (1,), BF16)


def test_build_info_is_deterministic_and_follows_the_sources(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "trt").mkdir()
    for name in ("launch.py", "aot.py", "kernels/a.py", "trt/b.py", "unrelated.txt"):
        (tmp_path / name).write_text(name)
    info = rules.plugin_build_info(tmp_path, triton_version="3.9.0")
    assert sorted(info["sources"]) == ["aot.py", "kernels/a.py", "launch.py", "trt/b.py"]
    assert info["plugins"] == {"seo::LocalWindowAttention": "1", "seo::LocalWindowAttention_zero_bias": "1",
                               "seo::LandmarkAttention": "1", "seo::LandmarkAttention_zero_bias": "1"}
    assert rules.plugin_build_info(tmp_path, triton_version="3.9.0") == info
    (tmp_path / "kernels/a.py").write_text("changed")
    assert rules.plugin_build_info(tmp_path, triton_version="3.9.0") != info
    assert rules.plugin_build_info(tmp_path, triton_version="3.10.0") != rules.plugin_build_info(
        tmp_path, triton_version="3.9.0")
    real = rules.plugin_build_info()
    assert "kernels/local_window.py" in real["sources"] and "trt/rules.py" in real["sources"]


# ----------------------------------------------------------------------------- a stand-in for tensorrt.plugin


class Expr:
    """A symbolic dimension: arithmetic builds text, constants know their value."""

    def __init__(self, text, value=None):
        self.text, self.value, self.is_fake = str(text), value, False

    @property
    def is_constant(self):
        return self.value is not None

    def constant_value(self):
        assert self.value is not None
        return self.value

    def _op(self, other, op):
        return Expr(f"({self} {op} {other})")

    def __mul__(self, other):
        return self._op(other, "*")

    def __add__(self, other):
        return self._op(other, "+")

    def __floordiv__(self, other):
        return self._op(other, "//")

    def __str__(self):
        return self.text


class Shape(tuple):
    def __new__(cls, dims, minimum=None, maximum=None):
        shape = super().__new__(cls, dims)
        shape.min, shape.max = minimum, maximum
        return shape


class FakeTrtp(types.ModuleType):
    """Enough of ``tensorrt.plugin`` to register the plugins and call their callbacks, checking the
    signature rules tensorrt.plugin enforces (its _validate.py): annotated register arguments,
    tensors before attributes, and the exact argument names of autotune, impl and aot_impl."""

    class TensorDesc:
        def __init__(self, shape_expr, dtype, shape=None):
            self.shape_expr, self.dtype, self._shape = list(shape_expr), dtype, shape

        @property
        def ndim(self):
            return len(self.shape_expr)

        @property
        def has_shape(self):
            return self._shape is not None

        @property
        def shape(self):
            return self._shape

        def like(self):
            return FakeTrtp.TensorDesc(self.shape_expr, self.dtype, self._shape)

    class Tensor:
        pass

    class KernelLaunchParams:
        def __init__(self):
            self.grid_x = self.grid_y = self.grid_z = self.block_x = self.block_y = self.block_z = 1
            self.shared_mem = 0

    class SymExprs(list):
        pass

    class SymIntExprs(SymExprs):
        @classmethod
        def from_tuple(cls, values):
            return cls(values)

    class SymInt32:
        def __init__(self, value):
            self.value = value

    class AutoTuneCombination:
        def __init__(self, io_types=None, layouts=None, tactics=None):
            self.io_types, self.layouts, self.tactics = io_types, layouts, tactics

    def __init__(self):
        super().__init__("fake_tensorrt_plugin")
        self.op = types.ModuleType("op")
        self.registry = {}

    @staticmethod
    def cdiv(a, b):
        return Expr(f"cdiv({a}, {b})")

    def register(self, plugin_id):
        def decorate(fn):
            namespace, name = plugin_id.split("::")
            assert "." not in namespace + name and namespace not in ("", "trt", "tensorrt", "std")
            sig = inspect.signature(fn)
            tensors, attrs, seen_attr = [], {}, False
            for pname, param in sig.parameters.items():
                assert param.annotation is not inspect.Parameter.empty, f"{pname} has no annotation"
                assert not isinstance(param.annotation, str), "annotations must be classes"
                assert param.default is inspect.Parameter.empty, "defaults are not supported"
                if isinstance(param.annotation, type) and issubclass(param.annotation, FakeTrtp.TensorDesc):
                    assert not seen_attr, "tensors come before attributes"
                    tensors.append(pname)
                else:
                    assert param.annotation in (int, float, str, bool, bytes) or (  # or npt.NDArray[dtype]
                        typing.get_origin(param.annotation) is np.ndarray), f"{pname}: unsupported type"
                    assert pname not in ("outputs", "stream", "tactic")
                    seen_attr = True
                    attrs[pname] = param.annotation
            assert sig.return_annotation is FakeTrtp.TensorDesc
            if not hasattr(self.op, namespace):
                setattr(self.op, namespace, types.ModuleType(namespace))
            ns = getattr(self.op, namespace)
            assert not hasattr(ns, name), f"{plugin_id} registered twice"
            setattr(ns, name, fn)
            self.registry[plugin_id] = dict(register=fn, tensors=tensors, attrs=attrs)
            return fn
        return decorate

    def _check_names(self, plugin_id, fn, tail):
        plugin = self.registry[plugin_id]
        names = list(inspect.signature(fn).parameters)
        tensors = names[:len(plugin["tensors"])]
        assert tensors == plugin["tensors"], f"{fn.__name__}: tensors {tensors}"
        used = [n for n in names[len(tensors):] if n in plugin["attrs"]]
        assert used == [n for n in plugin["attrs"] if n in used], "attributes in registration order"
        assert names == tensors + used + tail, f"{fn.__name__}: {names}"
        for name in used:
            annotation = inspect.signature(fn).parameters[name].annotation
            assert annotation in (inspect.Parameter.empty, plugin["attrs"][name])
        return used

    def autotune(self, plugin_id):
        def decorate(fn):
            self.registry[plugin_id]["autotune"] = (fn, self._check_names(plugin_id, fn, ["outputs"]))
            return fn
        return decorate

    def impl(self, plugin_id):
        def decorate(fn):
            used = self._check_names(plugin_id, fn, ["outputs", "stream"])
            assert inspect.signature(fn).return_annotation in (None, inspect.Parameter.empty)
            self.registry[plugin_id]["impl"] = (fn, used)
            return fn
        return decorate

    def aot_impl(self, plugin_id):
        def decorate(fn):
            used = self._check_names(plugin_id, fn, ["outputs", "tactic"])
            ret = inspect.signature(fn).return_annotation
            assert typing.get_origin(ret) is tuple, "aot_impl needs a Tuple return annotation"
            args = typing.get_args(ret)
            assert len(args) == 4
            for union in args[:2]:
                assert set(typing.get_args(union)) == {str, bytes}
            assert issubclass(args[2], FakeTrtp.KernelLaunchParams) and issubclass(args[3], FakeTrtp.SymExprs)
            self.registry[plugin_id]["aot_impl"] = (fn, used)
            return fn
        return decorate


def desc(dims, dtype, constants=()):
    """A TensorDesc whose dims are symbols except ``constants`` (index -> value)."""
    constants = dict(constants)
    exprs = [Expr(constants[i], constants[i]) if i in constants else Expr(d) for i, d in enumerate(dims)]
    return FakeTrtp.TensorDesc(exprs, dtype)


def node_inputs(dtype=HALF, head_dim=8, width=5):
    return (desc("BHSD", dtype, {3: head_dim}), desc("BHSD", dtype, {3: head_dim}), desc("BHSD", dtype, {3: head_dim}),
            desc("BS", BOOL), desc("HW", dtype, {1: width}))


@pytest.fixture
def trtp():
    fake = FakeTrtp()
    assert local_window.register(fake) and landmark.register(fake)
    return fake


def test_registration_checks_signatures_and_is_idempotent(trtp):
    assert not local_window.register(trtp) and not landmark.register(trtp), "a second call registers nothing"
    assert rules.is_registered(trtp, LOCAL) and rules.is_registered(trtp, LANDMARK)
    assert not rules.is_registered(FakeTrtp(), LOCAL)
    local = trtp.registry["seo::LocalWindowAttention"]
    assert local["tensors"] == list(rules.INPUT_NAMES)
    ints, floats = rules.INT_ATTRIBUTE, rules.FLOAT_ATTRIBUTE  # see tests/plugins/test_trt_registration.py
    assert local["attrs"] == {"window_left": ints, "window_right": ints, "scale": floats}
    assert trtp.registry["seo::LandmarkAttention"]["attrs"] == {"num_landmarks": ints, "pinv_iterations": ints,
                                                                "scale": floats}
    for plugin in trtp.registry.values():
        assert plugin["aot_impl"][1] == list(plugin["attrs"]), "aot_impl takes every attribute, in order"
        assert plugin["impl"][1] == list(plugin["attrs"]), "impl serializes every attribute"


def test_output_is_like_q_and_bad_nodes_are_refused(trtp):
    register = trtp.registry["seo::LocalWindowAttention"]["register"]
    inputs = node_inputs(FLOAT)
    out = register(*inputs, 3, 0, 0.25)
    assert out.dtype == FLOAT and [str(e) for e in out.shape_expr] == ["B", "H", "S", "8"]
    with pytest.raises(rules.PluginRuleError, match="window_left must be >= 0"):
        register(*inputs, -1, 0, 0.25)
    with pytest.raises(rules.PluginRuleError, match="key_mask must be BOOL"):
        register(*inputs[:3], desc("BS", HALF), inputs[4], 1, 1, 0.25)
    landmark_register = trtp.registry["seo::LandmarkAttention"]["register"]
    assert landmark_register(*node_inputs(), 8, 6, 0.1).dtype == HALF
    with pytest.raises(rules.PluginRuleError, match="num_landmarks must be >= 1"):
        landmark_register(*node_inputs(), 0, 6, 0.1)


def test_autotune_offers_fp16_and_fp32_with_a_bool_mask(trtp):
    for plugin in trtp.registry.values():
        fn, _ = plugin["autotune"]
        (combination,) = fn(*node_inputs(), outputs=(node_inputs()[0],))
        assert [t.strip() for t in combination.io_types.split(",")] == ["FP32|FP16"] * 3 + ["BOOL"] + ["FP32|FP16"] * 2
        assert combination.layouts == "LINEAR"


# A small configuration, compiled once (without the interpreter) for the aot_impl tests.
COMPILE = """
import json, sys
from seo_plugins.aot import KernelConfig, compile_kernels
compile_kernels([KernelConfig(**json.loads(c)) for c in sys.argv[2:]], archs=("sm_80",), out_dir=sys.argv[1], jobs=1)
"""
AOT_ATTRS = dict(window_left=3, window_right=0, scale=0.25)


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels")
    config = rules.kernel_config(LOCAL, "fp16", 8, 5, AOT_ATTRS)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE, str(out), json.dumps(dataclasses.asdict(config))],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_aot_impl_returns_the_ptx_tensorrt_launches(trtp, kernel_dir, monkeypatch):
    monkeypatch.setenv(rules.ARCH_ENV, "sm_80")
    monkeypatch.setenv(rules.KERNEL_DIR_ENV, str(kernel_dir))
    fn, _ = trtp.registry["seo::LocalWindowAttention"]["aot_impl"]
    inputs = node_inputs(HALF, head_dim=8, width=5)
    name, ptx, params, extra = fn(*inputs, *AOT_ATTRS.values(), outputs=(inputs[0].like(),), tactic=0)
    manifest = json.loads((kernel_dir / "manifest.json").read_text())
    (entry,) = manifest["kernels"]
    assert name == entry["kernel"] and isinstance(ptx, bytes)
    assert len(ptx_entry_params(ptx.decode(), name)) == 8, "q k v mask bias num_heads seq_len out: no scratch"
    assert entry["grid"]["expr"] == [f"cdiv(S, {entry['grid']['launch']['block_m']})", "B * H", "1"]
    assert str(params.grid_x) == f"cdiv(S, {entry['grid']['launch']['block_m']})"
    assert str(params.grid_y) == "(B * H)" and params.grid_z == 1
    assert (params.block_x, params.block_y, params.block_z) == tuple(entry["block"])
    assert params.shared_mem == entry["shared_mem_bytes"]
    assert isinstance(extra, trtp.SymIntExprs) and [str(e.value) for e in extra] == ["H", "S"]


def test_aot_impl_needs_build_time_head_dim_and_bias_width(trtp, kernel_dir):
    inputs = list(node_inputs())
    inputs[0] = desc("BHSD", HALF)  # D symbolic, no concrete shape
    with pytest.raises(rules.PluginRuleError, match="head dim .q.shape.3.. must be known"):
        rules.aot_impl_result(trtp, LOCAL, inputs, AOT_ATTRS, "sm_80", str(kernel_dir))
    dynamic = desc("BHSD", HALF)
    dynamic._shape = Shape((-1, 2, -1, -1), minimum=(1, 2, 1, 8), maximum=(8, 2, 512, 8))
    inputs[0] = dynamic
    name, _, _, _ = rules.aot_impl_result(trtp, LOCAL, inputs, AOT_ATTRS, "sm_80", str(kernel_dir))
    assert name, "min == max in the profile is a build-time constant"


def test_a_kernel_missing_from_the_folder_is_compiled(trtp, kernel_dir):
    from seo_plugins.kernels import is_interpreted
    from seo_plugins.kernels.local_window import local_window_fwd

    if not is_interpreted(local_window_fwd):
        pytest.skip("kernels are compiled here; the fallback would compile for real")
    with pytest.raises(MissingDependencyError, match="TRITON_INTERPRET"):
        rules.aot_impl_result(trtp, LOCAL, node_inputs(), dict(AOT_ATTRS, window_left=4), "sm_80", str(kernel_dir))


# ----------------------------------------------------------------------------- the JIT launch


def launch_device():
    from seo_plugins.kernels import is_interpreted
    from seo_plugins.kernels.local_window import local_window_fwd

    if is_interpreted(local_window_fwd):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    pytest.skip("Triton was imported before TRITON_INTERPRET=1 was set and no CUDA GPU is visible")


def plugin_inputs(seq, head_dim, heads, k, dtype, batch=2):
    q, kk, v = (torch.randn(batch, heads, seq, head_dim).to(dtype) for _ in range(3))
    mask = torch.rand(batch, seq) > 0.3
    mask[batch - 1] = False  # a fully padded sample (the last)
    bias = torch.zeros(heads, 1) if k == 0 else torch.randn(heads, 2 * k + 1)
    return q, kk, v, mask, bias.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("k", [0, 2])
def test_jit_launch_matches_the_reference(dtype, k):
    device = launch_device()
    q, kk, v, mask, bias = plugin_inputs(21, 8, 2, k, dtype)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-3, rtol=2e-3)

    expected = ops.local_window_attention(q, kk, v, window_left=3, window_right=1, key_padding_mask=mask,
                                          rel_bias=bias, scale=0.3)
    tensors = [t.to(device) for t in (q, kk, v, mask.to(torch.int8), bias)]
    out = torch.empty_like(tensors[0])
    local_window.launch_into(out, *tensors, 3, 1, 0.3)
    torch.testing.assert_close(out.cpu().float(), expected.float(), **tol)
    assert (out.cpu()[-1] == 0).all()

    expected = ops.landmark_attention(q, kk, v, num_landmarks=4, pinv_iterations=6, key_padding_mask=mask,
                                      rel_bias=bias, scale=0.3)
    out = torch.empty_like(tensors[0])
    landmark.launch_into(out, *[t.to(device) for t in (q, kk, v, mask, bias)], 4, 6, 0.3)  # a bool mask too
    torch.testing.assert_close(out.cpu().float(), expected.float(), **(tol if dtype == torch.float16 else
                                                                        dict(atol=1e-4, rtol=1e-4)))


def test_jit_launch_checks_attributes():
    q, kk, v, mask, bias = plugin_inputs(5, 8, 1, 0, torch.float32, batch=1)
    with pytest.raises(rules.PluginRuleError, match="window_right must be >= 0"):
        local_window.launch_into(torch.empty_like(q), q, kk, v, mask, bias, 1, -1, 0.5)
    assert math.isfinite(rules.check_landmark_attributes(1, 0, 1.0)["scale"])


# ----------------------------------------------------------------------------- the package without TensorRT


def test_register_plugins_names_what_is_missing(monkeypatch):
    import seo_plugins.trt as plugins
    from seo_export.backends.tensorrt import loader

    if plugins.registered():
        pytest.skip("TensorRT is present: the plugins are registered")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match="TensorRT is not installed"):
        plugins.register_plugins()
    assert plugins.UNAVAILABLE_REASON
    registration = loader.register_seo_plugins()
    assert registration.manifest_sha256 is None
    assert "TensorRT is not installed" in registration.unavailable_reason


def test_a_definition_tensorrt_refuses_is_reported_not_raised(monkeypatch):
    # tensorrt.plugin raises ValueError for a schema it rejects or a plugin already registered;
    # that must not escape the package import, and the registration says why.
    import seo_plugins.trt as plugins
    from seo_export.backends.tensorrt import loader

    if plugins.registered():
        pytest.skip("TensorRT is present: the plugins are registered")
    fake = types.ModuleType("tensorrt")
    fake.plugin = types.ModuleType("tensorrt.plugin")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", fake.plugin)
    monkeypatch.setattr(plugins, "tensorrt_problem", lambda: None)

    def refuse(trtp):
        assert trtp is fake.plugin
        raise ValueError("Plugin seo::LocalWindowAttention is already registered")

    monkeypatch.setattr(local_window, "register", refuse)
    with pytest.raises(ImportError, match="refused the seo plugin definitions: Plugin seo::LocalWindowAttention"):
        plugins.register_plugins()
    assert not plugins.registered()
    registration = loader.register_seo_plugins()
    assert registration.manifest_sha256 is None and "already registered" in registration.unavailable_reason
