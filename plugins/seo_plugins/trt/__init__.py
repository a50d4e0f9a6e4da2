"""TensorRT plugins for the seo ops: ``seo::LocalWindowAttention`` and ``seo::LandmarkAttention``, version 1.

Importing this package registers both plugins with ``tensorrt.plugin`` where TensorRT
(10.12 or later, with AOT Python plugins), PyTorch and Triton are present, so that
TensorRT's ONNX parser finds them. ``register_plugins()`` does the same, is idempotent,
and returns the plugin build description (plugin ids, Triton version, source hashes) that
engine manifests fingerprint; where something is missing it raises ``ImportError`` naming it.

The import itself never fails for a missing TensorRT: ``seo_plugins.trt.rules`` (the
shape, type and attribute rules, all plain Python) must stay importable everywhere, and a
package whose ``__init__`` raises takes its submodules down with it.

Both plugins define an AOT implementation (PTX launched by TensorRT itself; engines run
without Python, e.g. under trtexec) and a JIT one (Triton called from Python). TensorRT
refuses to pick between them unless told: ``seo_export.backends.tensorrt.builder.network_flags``
creates the network with NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS, and a node's
integer attribute ``aot`` (1 AOT, 0 JIT) overrides it.
"""

import importlib.util

from seo_plugins.errors import one_line
from seo_plugins.tensorrt_import import import_tensorrt
from seo_plugins.trt import rules


_build_info = None  # set once both plugins are registered
UNAVAILABLE_REASON = None  # why importing did not register the plugins, or None


def tensorrt_problem():
    """None when the plugins can be registered here, else what is missing, in one line."""
    trt, problem = import_tensorrt()
    if problem:
        return f"{problem} (the seo plugins need TensorRT's AOT Python plugins)"
    version = trt.__version__
    try:
        import tensorrt.plugin as trtp
    except Exception as exc:
        return f"TensorRT {version} has no usable tensorrt.plugin module ({exc})"
    if not hasattr(trtp, "aot_impl") or not hasattr(trt, "QuickPluginCreationRequest"):
        return f"TensorRT {version} lacks AOT Python plugins (tensorrt.plugin.aot_impl)"
    for module, purpose in (("torch", "PyTorch"), ("triton", "Triton")):
        if importlib.util.find_spec(module) is None:
            return f"{purpose} is not installed (the seo plugins compile and launch their kernels with it)"
    return None


def register_plugins() -> dict:
    """Register both plugins (once per process) and return the plugin build description."""
    global _build_info
    if _build_info is not None:
        return _build_info
    problem = tensorrt_problem()
    if problem:
        raise ImportError(problem)
    import tensorrt as trt
    import tensorrt.plugin as trtp

    from seo_plugins.trt import landmark, local_window

    for module in (local_window, landmark):
        try:
            module.register(trtp)
        except ValueError as exc:  # tensorrt.plugin refuses a definition (schema, or one already registered)
            raise ImportError(f"TensorRT's plugin API refused the seo plugin definitions: {exc}") from exc
        except Exception as exc:  # anything else it raises must not escape the package import as a traceback
            raise ImportError(
                f"registering {rules.NAMESPACE}::{module.PLUGIN} with TensorRT {trt.__version__}'s tensorrt.plugin "
                f"failed ({one_line(exc)}); install a TensorRT release whose tensorrt.plugin has AOT plugins (10.12 "
                "or later), or export with `seo-export export --decomposed`, which needs no plugins") from exc
    _build_info = rules.plugin_build_info()
    return _build_info


def registered() -> bool:
    return _build_info is not None


try:
    register_plugins()
except ImportError as _exc:
    UNAVAILABLE_REASON = str(_exc)

__all__ = ["UNAVAILABLE_REASON", "register_plugins", "registered", "rules", "tensorrt_problem"]
