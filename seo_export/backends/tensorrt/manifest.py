"""The engine manifest, ``MODEL.engine.json``: what an engine was built from and for.

A TensorRT engine only runs with the TensorRT version, GPU model and plugin build
it was made with; a mismatch shows up as a failed deserialization at best and as
corrupt-looking outputs at worst. The manifest records those facts at build time so
that ``run`` can refuse a mismatch with a message instead. Everything here is plain
Python, testable without TensorRT or a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from seo_export import __version__
from seo_export.backends.tensorrt.profiles import Profile
from seo_export.errors import UsageError
from seo_export.utils.files import sha256_file
from seo_export.utils.files import atomic_write_text

FORMAT = "seo-export-engine-manifest"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Environment:
    """What an engine depends on in the machine that builds or runs it."""

    tensorrt_version: str
    cuda_version: str | None
    gpu_name: str
    compute_capability: str  # "9.0"
    plugin_manifest_sha256: str | None  # None: no seo plugins registered


@dataclass(frozen=True)
class EngineManifest:
    environment: Environment
    onnx_sha256: str
    engine_sha256: str
    profiles: list[Profile]
    onnx_file: str = ""
    model_config: dict | None = None
    seo_plugin_layers: int | None = None  # per the engine inspector; None: not counted (older manifests)
    seo_export_version: str = __version__
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["profiles"] = [p.to_dict() for p in self.profiles]
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict) -> EngineManifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("it is not an seo-export engine manifest")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"it has format version {data['format_version']}; this seo-export "
                             f"({__version__}) reads up to {FORMAT_VERSION}, upgrade seo-export")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["environment"] = Environment(**data["environment"])
        values["profiles"] = [Profile.from_dict(p) for p in data["profiles"]]
        return cls(**values)


def manifest_path(engine_path: str | os.PathLike) -> Path:
    """``MODEL.engine`` -> ``MODEL.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_manifest(manifest: EngineManifest, engine_path: str | os.PathLike) -> Path:
    path = manifest_path(engine_path)
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(engine_path: str | os.PathLike) -> EngineManifest | None:
    """The manifest beside ``engine_path``, or None when there is none."""
    path = manifest_path(engine_path)
    if not path.is_file():
        return None
    try:
        return EngineManifest.from_dict(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, UsageError) as exc:
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise UsageError(f"engine manifest {path} is unreadable ({reason}); rebuild the engine "
                         "with `seo-export build`") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(plugin_manifest) -> str | None:
    """The sha256 that stands for a plugin manifest given as a hash, a JSON file path or a dict."""
    if plugin_manifest is None:
        return None
    if isinstance(plugin_manifest, str) and len(plugin_manifest) == 64 and \
            all(c in "0123456789abcdef" for c in plugin_manifest.lower()):
        return plugin_manifest.lower()
    if isinstance(plugin_manifest, (str, os.PathLike)) and Path(plugin_manifest).is_file():
        return sha256_file(plugin_manifest)
    if isinstance(plugin_manifest, dict):
        # Canonical JSON, so key order and whitespace do not change the hash.
        return sha256_bytes(json.dumps(plugin_manifest, sort_keys=True, separators=(",", ":")).encode())
    if isinstance(plugin_manifest, bytes):
        return sha256_bytes(plugin_manifest)
    raise TypeError(f"cannot fingerprint a plugin manifest given as {type(plugin_manifest).__name__}")


def _short(value: str | None) -> str:
    if value is None:
        return "none"
    return value[:12] if len(value) == 64 else value


def _major(version: str | None) -> str | None:
    return None if version is None else version.split(".")[0]


def _same(a, b) -> bool:
    return a == b


def _same_major(a: str | None, b: str | None) -> bool:
    return _major(a) == _major(b)


# Why each fact matters: an engine holds kernels for one TensorRT build and one GPU
# model (TensorRT refuses or misbehaves across either), custom-op kernels from one
# plugin build, and links one CUDA major version.
_RULES = (
    ("TensorRT", "tensorrt_version", _same),
    ("GPU", "gpu_name", _same),
    ("compute capability", "compute_capability", _same),
    ("seo plugin build", "plugin_manifest_sha256", _same),
    ("CUDA major version", "cuda_version", _same_major),
)


def check_compatible(manifest: EngineManifest, environment: Environment) -> str | None:
    """None when the engine fits this machine, else one line naming every mismatch."""
    built = manifest.environment
    mismatches = []
    for what, attribute, same in _RULES:
        then, now = getattr(built, attribute), getattr(environment, attribute)
        if not same(then, now):
            mismatches.append(f"{what} {_short(then)} at build, {_short(now)} here")
    if not mismatches:
        return None
    return (f"the engine does not match this machine: {'; '.join(mismatches)}. Rebuild it here with "
            "`seo-export build` (or pass --no-manifest-check to try it anyway)")
