"""What building and running engines needs, loaded lazily: TensorRT, a CUDA GPU, the seo plugins, ONNX files.

Nothing here imports TensorRT at module import, so the rest of seo-export (and
its error messages) works on machines without it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from seo_export.backends.tensorrt.manifest import Environment, fingerprint, sha256_file
from seo_export.errors import MissingDependencyError
from seo_plugins.errors import one_line
from seo_plugins.tensorrt_import import import_tensorrt

INSTALL_HINT = 'pip install "seo-export[tensorrt]" on a machine with an NVIDIA GPU and its driver'
PLUGIN_MODULE = "seo_plugins.trt"


def _gpu_problem() -> str | None:
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"PyTorch {torch.__version__} is a CPU-only build, so no CUDA GPU is visible"
    return "no CUDA GPU is visible"


def tensorrt_available() -> bool:
    """True where engines can be built and run: TensorRT importable and a CUDA GPU visible."""
    return import_tensorrt()[0] is not None and _gpu_problem() is None


def load_tensorrt(purpose: str):
    """The tensorrt module, or a one-line MissingDependencyError naming everything missing for ``purpose``."""
    trt, trt_problem = import_tensorrt()
    gpu_problem = _gpu_problem()
    problems = [p for p in (trt_problem, gpu_problem) if p]
    if problems:
        hint = INSTALL_HINT
        if gpu_problem and gpu_problem.startswith("PyTorch"):
            hint += ", and a CUDA build of PyTorch"
        raise MissingDependencyError(f"{purpose} needs TensorRT and a CUDA GPU: {' and '.join(problems)}; {hint}")
    return trt


def make_logger(trt, verbose: bool = False):
    """A TensorRT logger that keeps errors and warnings for our one-line messages instead of printing them."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.WARNING:
                self.warnings.append(msg)
            if verbose:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return CollectingLogger()


@dataclass(frozen=True)
class PluginRegistration:
    manifest_sha256: str | None  # None: no seo plugins registered
    unavailable_reason: str | None = None


def register_seo_plugins() -> PluginRegistration:
    """Register the seo TensorRT plugins, if their module is installed.

    Contract with ``seo_plugins.trt``: importing it (or calling its optional
    ``register_plugins()``) registers the plugins; ``register_plugins()`` may return
    the plugin manifest (dict, JSON path or sha256). When it returns nothing, the
    module's source hash identifies the plugin build.
    """
    try:
        module = importlib.import_module(PLUGIN_MODULE)
    except ImportError as exc:  # no plugins: models without seo nodes still build
        return PluginRegistration(None, f"{PLUGIN_MODULE} cannot be imported: {exc}")
    except Exception as exc:  # a broken install must not end a build of a model without seo nodes in a traceback
        return PluginRegistration(None, f"importing {PLUGIN_MODULE} failed ({one_line(exc)}); reinstall seo-export")
    register = getattr(module, "register_plugins", None)
    try:
        result = register() if callable(register) else None
    except ImportError as exc:  # the module is there, but not what it needs (TensorRT's plugin API, Triton)
        return PluginRegistration(None, f"{PLUGIN_MODULE} cannot register the seo plugins: {exc}")
    except Exception as exc:  # anything else TensorRT's plugin API raised: reported where seo nodes need it
        return PluginRegistration(None, f"{PLUGIN_MODULE}.register_plugins() failed ({one_line(exc)}); check that "
                                        "TensorRT 10.12 or later is installed with its Python plugin API")
    return PluginRegistration(fingerprint(result) or sha256_file(module.__file__))


def register_plugins(registrar: Callable[[], PluginRegistration] | None) -> PluginRegistration:
    """Call ``registrar`` (``register_seo_plugins`` by default in build and run); None registers nothing."""
    return registrar() if registrar else PluginRegistration(None, "no plugin registrar was given")


def current_environment(trt, plugins: PluginRegistration, device: int = 0) -> Environment:
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return Environment(
        tensorrt_version=trt.__version__,
        # torch's CUDA stands in for the process's CUDA runtime; only the major version is compared.
        cuda_version=torch.version.cuda,
        gpu_name=torch.cuda.get_device_name(device),
        compute_capability=f"{major}.{minor}",
        plugin_manifest_sha256=plugins.manifest_sha256,
    )
