"""The seo plugins' registration as TensorRT's ``tensorrt.plugin`` sees it, without TensorRT.

``TensorRTPlugin`` stands in for ``tensorrt.plugin`` where it touches our definitions: the
attribute annotations its ``register`` accepts (``_validate.py``, ``_parse_register_inputs``), how
its plugin creator turns the plugin fields onnx-tensorrt hands over into the attributes our
callbacks get (``_lib.py``, ``_TemplatePluginCreator.create_plugin``, the same in TensorRT 10.12
to 11.1), and how a JIT plugin serializes them into an engine (``_plugin_class.py``,
``get_fields_to_serialize``), which deserialisation reads back through ``create_plugin``.
onnx-tensorrt's ``loadFields`` hands an INT attribute over as a one-element int32 array and a
FLOAT one as a one-element float32 array. (No ``from __future__ import annotations``: the
stand-in, like TensorRT, reads annotations as classes.)
"""

import inspect
import sys
import types
import typing

import numpy as np
import numpy.typing as npt
import pytest

from seo_plugins.trt import landmark, local_window, rules

pytest.importorskip("triton")  # seo_plugins.trt.rules imports the kernel launch tiles

NUMPY_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, bool, np.bool_)


class Field:
    """A ``tensorrt.PluginField`` as the Python bindings show it: ``data`` is a NumPy array."""

    def __init__(self, name: str, data: np.ndarray):
        self.name, self.data = name, data


def onnx_field(name: str, value) -> Field:
    """What onnx-tensorrt's loadFields passes for an ONNX INT or FLOAT attribute."""
    return Field(name, np.array([value], dtype=np.int32 if isinstance(value, int) else np.float32))


def _is_npt_ndarray(annotation) -> bool:  # tensorrt/plugin/_utils.py
    return typing.get_origin(annotation) == np.ndarray


def _infer_numpy_type(annotation):  # tensorrt/plugin/_utils.py
    return typing.get_args(typing.get_args(annotation)[1])[0]


class TensorRTPlugin(types.ModuleType):
    """``tensorrt.plugin``'s handling of registered definitions and their attributes."""

    class TensorDesc:
        def __init__(self, ndim=4, dtype="HALF"):
            self.ndim, self.dtype = ndim, dtype

        def like(self):
            return TensorRTPlugin.TensorDesc(self.ndim, self.dtype)

    class Tensor:
        pass

    class KernelLaunchParams:
        pass

    class SymIntExprs(list):
        pass

    class AutoTuneCombination:
        def __init__(self, io_types=None, layouts=None):
            self.io_types, self.layouts = io_types, layouts

    def __init__(self):
        super().__init__("tensorrt.plugin")
        self.op = types.ModuleType("op")
        self.definitions = {}

    def register(self, plugin_id):
        def decorate(fn):
            namespace, name = plugin_id.split("::")
            attrs = {}
            for pname, param in inspect.signature(fn).parameters.items():
                annotation = param.annotation
                if isinstance(annotation, type) and issubclass(annotation, TensorRTPlugin.TensorDesc):
                    continue
                # _parse_register_inputs: builtins, or npt.NDArray[dtype] (a bare np.ndarray is refused)
                if annotation not in (int, float, bytes, bool, str):
                    if annotation is np.ndarray or not _is_npt_ndarray(annotation):
                        raise ValueError(f"Attribute '{pname}' of type {annotation} is not supported")
                    if _infer_numpy_type(annotation) not in NUMPY_DTYPES:
                        raise ValueError(f"Attribute '{pname}' is not a supported numpy array type")
                attrs[pname] = annotation
            if not hasattr(self.op, namespace):
                setattr(self.op, namespace, types.ModuleType(namespace))
            if hasattr(getattr(self.op, namespace), name):
                raise ValueError(f"'op' already has a defintion for '{name}'")
            setattr(getattr(self.op, namespace), name, fn)
            self.definitions[plugin_id] = {"register": fn, "attrs": attrs}
            return fn
        return decorate

    def _callback(self, kind):
        def decorator(plugin_id):
            def decorate(fn):
                definition = self.definitions[plugin_id]
                for name, param in inspect.signature(fn).parameters.items():
                    if name in definition["attrs"] and param.annotation != definition["attrs"][name]:
                        raise ValueError(f"Attribute '{name}' has a type annotation different from the one "
                                         "specified at registration.")
                definition[kind] = fn
                return fn
            return decorate
        return decorator

    def __getattr__(self, kind):
        if kind in ("autotune", "impl", "aot_impl"):
            return self._callback(kind)
        raise AttributeError(kind)

    def create_plugin_attrs(self, plugin_id: str, fields) -> dict:
        """The attributes ``_TemplatePluginCreator.create_plugin`` gives the callbacks."""
        annotations = self.definitions[plugin_id]["attrs"]
        attrs = {}
        for f in fields:
            annotation = annotations[f.name]
            if annotation is np.ndarray or _is_npt_ndarray(annotation):
                attrs[f.name] = f.data.astype(_infer_numpy_type(annotation))
            elif issubclass(annotation, str):
                attrs[f.name] = f.data.tobytes().decode("utf-8")
            else:
                attrs[f.name] = annotation(f.data)  # int(array([3])): TypeError from NumPy 2.4 on
        return attrs

    @staticmethod
    def serialized_fields(attrs: dict) -> list[Field]:
        """``get_fields_to_serialize``: arrays keep their dtype, Python numbers become one-element arrays."""
        return [Field(key, value if isinstance(value, np.ndarray) else np.array([value]))
                for key, value in attrs.items()]


NODES = {
    "seo::LocalWindowAttention": dict(window_left=3, window_right=1, scale=0.125),
    "seo::LocalWindowAttention_zero_bias": dict(window_left=3, window_right=1, scale=0.125),
    "seo::LandmarkAttention": dict(num_landmarks=8, pinv_iterations=6, scale=0.125),
    "seo::LandmarkAttention_zero_bias": dict(num_landmarks=8, pinv_iterations=6, scale=0.125),
}


@pytest.fixture
def trtp():
    plugin = TensorRTPlugin()
    assert local_window.register(plugin) and landmark.register(plugin)
    return plugin


def inputs():
    desc = TensorRTPlugin.TensorDesc
    return desc(), desc(), desc(), desc(2, "BOOL"), desc(2)


def test_the_plugins_are_registered_under_each_five_input_overload_name(trtp):
    assert sorted(trtp.definitions) == sorted(NODES) == sorted(rules.PLUGIN_IDS)
    assert not local_window.register(trtp) and not landmark.register(trtp), "a second call registers nothing"
    for definition in trtp.definitions.values():
        assert {"autotune", "impl", "aot_impl"} <= set(definition)


@pytest.mark.parametrize("plugin_id", list(NODES))
def test_attributes_from_the_onnx_parser_reach_the_callbacks_as_python_numbers(trtp, plugin_id):
    fields = [onnx_field(name, value) for name, value in NODES[plugin_id].items()]
    attrs = trtp.create_plugin_attrs(plugin_id, fields)  # at parse: fails for int/float annotations
    assert all(isinstance(v, np.ndarray) and v.shape == (1,) for v in attrs.values())
    out = trtp.definitions[plugin_id]["register"](*inputs(), **attrs)
    assert out.dtype == "HALF"
    # A JIT plugin serializes its attributes into the engine; deserialising creates it again.
    again = trtp.create_plugin_attrs(plugin_id, trtp.serialized_fields(attrs))
    assert {k: v.tolist() for k, v in again.items()} == {k: v.tolist() for k, v in attrs.items()}
    assert trtp.definitions[plugin_id]["register"](*inputs(), **again).dtype == "HALF"


@pytest.mark.parametrize("plugin_id", ["seo::LocalWindowAttention_zero_bias", "seo::LandmarkAttention"])
def test_aot_impl_and_impl_get_python_scalars(trtp, plugin_id, monkeypatch):
    seen = {}
    monkeypatch.setattr(rules, "current_arch", lambda: "sm_90")
    monkeypatch.setattr(rules, "aot_impl_result",
                        lambda _trtp, plugin, _inputs, attrs, *_: seen.setdefault("aot", attrs))
    monkeypatch.setattr(rules, "run_jit", lambda stream, _inputs, out, launch: launch("out", "q", "k", "v", "m", "b"))
    module = local_window if "Local" in plugin_id else landmark
    monkeypatch.setattr(module, "launch_into", lambda out, *args: seen.setdefault("jit", args[5:]))
    attrs = trtp.create_plugin_attrs(plugin_id, [onnx_field(n, v) for n, v in NODES[plugin_id].items()])
    definition = trtp.definitions[plugin_id]
    definition["aot_impl"](*inputs(), **attrs, outputs=(inputs()[0],), tactic=0)
    definition["impl"](*inputs(), **attrs, outputs=(object(),), stream=0)
    assert seen["aot"] == NODES[plugin_id] and list(seen["jit"]) == list(NODES[plugin_id].values())
    assert all(type(v) in (int, float) for v in seen["aot"].values())


def test_int_and_float_annotations_fail_on_the_parsers_arrays():
    # Why the annotations are arrays: what TensorRT does with an `int` attribute, under this NumPy.
    trtp = TensorRTPlugin()

    @trtp.register("seo::Old")
    def old(q: TensorRTPlugin.TensorDesc, window_left: int, scale: float) -> TensorRTPlugin.TensorDesc:
        return q.like()

    fields = [onnx_field("window_left", 3), onnx_field("scale", 0.5)]
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        with pytest.raises(TypeError, match="0-dimensional"):
            trtp.create_plugin_attrs("seo::Old", fields)
    assert trtp.create_plugin_attrs("seo::Old", [Field("window_left", np.array(3, np.int32))]) == {
        "window_left": 3}, "only the parser's one-element arrays fail, a 0-d value converts"


def test_attribute_scalars_refuse_arrays_of_several_values():
    assert rules.attribute_scalars(rules.LOCAL_WINDOW, (np.array([2], np.int32), 0, np.array([0.5], np.float32))) == {
        "window_left": 2, "window_right": 0, "scale": 0.5}
    with pytest.raises(rules.PluginRuleError, match="window_right must be a single value, got 2"):
        rules.attribute_scalars(rules.LOCAL_WINDOW, (1, np.array([1, 2]), 0.5))
    assert rules.INT_ATTRIBUTE == npt.NDArray[np.int32] and rules.FLOAT_ATTRIBUTE == npt.NDArray[np.float32]


# ----------------------------------------------------------------------------- registration errors


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """A TensorRT whose plugin API is there, so register_plugins gets as far as our definitions."""
    import seo_plugins.trt as plugins

    if plugins.registered():
        pytest.skip("TensorRT is present: the plugins are registered")
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.12.0"
    fake.plugin = TensorRTPlugin()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", fake.plugin)
    monkeypatch.setattr(plugins, "tensorrt_problem", lambda: None)
    return plugins


@pytest.mark.parametrize("error", [TypeError("issubclass() arg 1 must be a class\nmore"), RuntimeError(),
                                   AttributeError("module 'tensorrt.plugin' has no attribute 'aot_impl'")])
def test_any_registration_error_is_one_line_naming_the_plugin(fake_tensorrt, monkeypatch, error):
    from seo_export.backends.tensorrt import loader

    def fail(trtp):
        raise error

    monkeypatch.setattr(landmark, "register", fail)
    with pytest.raises(ImportError) as caught:
        fake_tensorrt.register_plugins()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("registering seo::LandmarkAttention with TensorRT 10.12.0")
    assert f"({type(error).__name__}" in message and "10.12 or later" in message and "--decomposed" in message
    assert not fake_tensorrt.registered()
    registration = loader.register_seo_plugins()
    assert registration.manifest_sha256 is None and registration.unavailable_reason.endswith(message)
