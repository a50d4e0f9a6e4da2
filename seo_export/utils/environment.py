"""What this machine is: package versions, CPU, platform, allocator settings and load.

Shared by the report writers (validate and bench reports, the export-scaling benchmark) and
``seo-export info``. Nothing here imports an optional package: versions come from installed
distribution metadata, since importing triton or tensorrt just to read a version is slow and
can fail or have side effects.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata

#: The pipeline's packages, by import name.
PACKAGES = ("torch", "onnx", "onnxscript", "onnx_ir", "onnxruntime", "triton", "tensorrt", "safetensors")

#: Environment variables that change how the C library or a preloaded malloc hands out memory.
ALLOCATOR_ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "TCMALLOC_")


def package_version(name: str) -> str | None:
    """The installed version of the package imported as ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    # Distributions named unlike their module: onnxruntime-gpu, tensorrt-cu12-bindings, pytorch-triton.
    for distribution in _distributions_by_module().get(name, ()):
        return metadata.version(distribution)
    return None


@functools.cache
def _distributions_by_module() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed distribution: once per process


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def allocator_settings() -> dict:
    """The C library and the allocator settings in the environment. Eager PyTorch's CPU time
    depends on them: glibc's malloc maps every block over its mmap threshold (32 MB at most
    by default) afresh, so a [4, 12, 512, 512] float32 score matrix page-faults on each call."""
    name, version = platform.libc_ver()
    return {"libc": f"{name} {version}".strip() or None,
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ALLOCATOR_ENV_PREFIXES)}}


def load_average() -> float | None:
    """The 1-minute load average: on a shared machine it says how much to trust absolute times."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def collect_environment(threads: dict[str, int] | None = None) -> dict:
    """A report's ``environment``: versions, CPU/GPU and thread counts of this machine; ``threads``
    adds e.g. ORT's settings. Reads torch only when something already imported it."""
    torch = sys.modules.get("torch")
    gpu = torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None
    thread_counts = {"torch": torch.get_num_threads()} if torch is not None else {}
    thread_counts.update(threads or {})
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": {"model": cpu_model(), "count": os.cpu_count()},
        "gpu": gpu,
        "threads": thread_counts,
        "packages": {name: package_version(name) for name in ("numpy", *PACKAGES)},
        "allocator": allocator_settings(),
    }
