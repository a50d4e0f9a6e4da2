"""Importing TensorRT, or one line saying why it is unusable here.

Shared by the plugin registration and seo_export's TensorRT backend. Outside ``seo_plugins.trt``
on purpose: importing that package registers the plugins.
"""

from __future__ import annotations

MIN_TENSORRT = (10, 12)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def import_tensorrt():
    """(module, None) or (None, why it is unusable)."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, "TensorRT is not installed"
    except Exception as exc:  # a wheel whose native libraries are missing raises OSError and others
        return None, f"TensorRT cannot be loaded ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    version = getattr(trt, "__version__", "0")
    if _version_tuple(version) < MIN_TENSORRT:
        return None, f"TensorRT {version} is too old (seo-export needs {'.'.join(map(str, MIN_TENSORRT))} or later)"
    return trt, None
