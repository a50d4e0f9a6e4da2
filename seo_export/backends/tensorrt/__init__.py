"""TensorRT engines: build from ONNX with profiles and a manifest, then run with torch CUDA tensors.

Importing this package does not import TensorRT; that happens when an engine is
built or run, and its absence is a one-line MissingDependencyError.
"""

from seo_export.backends.tensorrt.builder import BuildResult, build_engine
from seo_export.backends.tensorrt.layers import EngineLayer, engine_layers, parse_engine_layers, seo_plugin_layers
from seo_export.backends.tensorrt.loader import load_tensorrt, register_seo_plugins, tensorrt_available
from seo_export.backends.tensorrt.manifest import EngineManifest, Environment, check_compatible, read_manifest
from seo_export.backends.tensorrt.profiles import Profile, load_profile_file, parse_profile
from seo_export.backends.tensorrt.runner import TrtRunner

__all__ = [
    "BuildResult",
    "EngineLayer",
    "EngineManifest",
    "Environment",
    "Profile",
    "TrtRunner",
    "build_engine",
    "check_compatible",
    "engine_layers",
    "load_profile_file",
    "load_tensorrt",
    "parse_engine_layers",
    "parse_profile",
    "read_manifest",
    "register_seo_plugins",
    "seo_plugin_layers",
    "tensorrt_available",
]
