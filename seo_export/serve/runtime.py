"""The serving environment: where the ``tritonserver`` binary, its python backend and the stub's Python come from.

The server is the Triton Inference Server 2.51 that ``nvidia-pytriton==0.7.0`` bundles (PyPI, Linux
x86-64): the ``tritonserver`` binary, the python backend (``libtriton_python.so``,
``triton_python_backend_utils.py``) and one python-backend stub per CPython version. It has no ONNX
Runtime or TensorRT backend: on this kind of host, models run in the python backend.

nvidia-pytriton 0.7.0 declares ``numpy<2``, and its stub needs numpy 1 at run time (under numpy 2 it
silently corrupts outputs: empty arrays, "output tensor shape does not match size of output"), while
seo-export's own environment runs numpy 2. So the server does not live in that environment: it lives
in a small virtual environment of its own, created from this interpreter with
``--system-site-packages`` and holding only ``nvidia-pytriton`` (without its Python dependencies,
which the server does not use) and numpy 1.26. The stub runs in that venv, so it sees numpy 1.26
first and everything else (onnxruntime, tokenizers, seo-export) from this environment. It is created
once (``seo-export serve --setup``, or the first ``seo-export serve``), under
``~/.cache/seo-export/serve/`` or ``$SEO_EXPORT_SERVE_ENV``.

Where this interpreter itself already has ``pytriton`` and numpy < 2 (a user who installed
nvidia-pytriton with its dependencies), that environment is used as it is.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from seo_export.errors import MissingDependencyError, UsageError

PYTRITON_VERSION = "0.7.0"
TRITON_SERVER_VERSION = "2.51.0"  # what nvidia-pytriton 0.7.0 bundles
#: The stub's numpy: the newest 1.x, which has wheels for CPython 3.9 to 3.12.
STUB_NUMPY = "numpy==1.26.4"
ENV_VARIABLE = "SEO_EXPORT_SERVE_ENV"
MARKER = "seo-export-serve-env.json"
REQUIREMENTS = (f"nvidia-pytriton=={PYTRITON_VERSION}", STUB_NUMPY)


@dataclass(frozen=True)
class Runtime:
    """A usable server installation: paths the server command and its environment need."""

    root: Path  # the Python environment (venv) the stub runs in
    python_bin: Path  # its bin/, first on the server's PATH: the stub takes the first python3 there
    package: Path  # .../site-packages/pytriton
    libs: Path  # .../site-packages/nvidia_pytriton.libs (libtritonserver, libcudart, ...)
    backends: Path  # backend directory: python/{libtriton_python.so, triton_python_backend_utils.py, stub}
    numpy_version: str

    @property
    def tritonserver(self) -> Path:
        return self.package / "tritonserver" / "bin" / "tritonserver"

    @property
    def caches(self) -> Path:
        return self.package / "tritonserver" / "caches"

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The server's environment: ``LD_LIBRARY_PATH`` starts with the interpreter's own LIBDIR
        (otherwise the stub loads the system's libpython3.11 and fails with "'_thread.RLock' object has
        no attribute '_recursion_count'") and holds the bundled libraries; ``PATH`` starts with the
        venv's bin/, whose python3 gives the stub its sys.prefix and site-packages."""
        env = dict(os.environ if base is None else base)
        libdir = sysconfig.get_config_var("LIBDIR")
        parts = [p for p in (libdir, str(self.libs), env.get("LD_LIBRARY_PATH", "")) if p]
        env["LD_LIBRARY_PATH"] = ":".join(parts)
        env["PATH"] = ":".join(p for p in (str(self.python_bin), env.get("PATH", "")) if p)
        env.pop("PYTHONHOME", None)
        env.pop("VIRTUAL_ENV", None)
        return env


def python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def default_location() -> Path:
    """``$SEO_EXPORT_SERVE_ENV``, else a folder per pytriton version, Python version and base interpreter
    (a venv is tied to the interpreter it was made from) under the user's cache."""
    if os.environ.get(ENV_VARIABLE):
        return Path(os.environ[ENV_VARIABLE]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = hashlib.sha256(str(Path(sys.base_prefix).resolve()).encode()).hexdigest()[:10]
    return cache / "seo-export" / "serve" / f"pytriton-{PYTRITON_VERSION}-py{python_version()}-{base}"


def _check_platform() -> None:
    if not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "AMD64"):
        raise UsageError(f"the bundled Triton Inference Server (nvidia-pytriton {PYTRITON_VERSION}) runs on Linux "
                         f"x86-64 only, not {sys.platform} {os.uname().machine}: serve the repository with a Triton "
                         "container image instead")
    if not (3, 8) <= sys.version_info[:2] <= (3, 13):
        raise UsageError(f"nvidia-pytriton {PYTRITON_VERSION} has python-backend stubs for CPython 3.8 to 3.13, "
                         f"not {python_version()}")


def _site_packages(root: Path) -> Path:
    return root / "lib" / f"python{python_version()}" / "site-packages"


def _backend_dir(package: Path, target: Path) -> Path:
    """``target/python/`` with the python backend's two files and this Python's stub, as symlinks into the
    package (the stub's RUNPATH, $ORIGIN-relative, resolves through the link to the bundled libraries)."""
    source = package / "tritonserver"
    links = {
        "libtriton_python.so": source / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": source / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": source / "python_backend_stubs" / python_version() / "triton_python_backend_stub",
    }
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name, file in links.items():
        if not file.is_file():
            raise UsageError(f"the pytriton installation at {package} has no {file.relative_to(package)}; "
                             "reinstall it (seo-export serve --setup --reinstall)")
        link = python_dir / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == file:
                continue
            link.unlink()
        link.symlink_to(file)
    return target


def _runtime_at(root: Path, package: Path, numpy_version: str, backends: Path) -> Runtime:
    return Runtime(root=root, python_bin=root / "bin", package=package, libs=package.parent / "nvidia_pytriton.libs",
                   backends=_backend_dir(package, backends), numpy_version=numpy_version)


def _current_environment() -> Runtime | None:
    """This interpreter's environment, when it already has pytriton and numpy < 2."""
    try:
        pytriton_version = metadata.version("nvidia-pytriton")
        numpy_version = metadata.version("numpy")
    except metadata.PackageNotFoundError:
        return None
    if int(numpy_version.split(".")[0]) >= 2 or pytriton_version != PYTRITON_VERSION:
        return None
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(list(spec.submodule_search_locations)[0])
    digest = hashlib.sha256(str(package).encode()).hexdigest()[:10]
    backends = default_location().parent / f"backends-py{python_version()}-{digest}"
    return _runtime_at(Path(sys.prefix), package, numpy_version, backends)


def _read_marker(root: Path) -> dict | None:
    try:
        data = json.loads((root / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _complete(root: Path) -> Runtime | None:
    marker = _read_marker(root)
    if not marker or marker.get("pytriton") != PYTRITON_VERSION or marker.get("python") != python_version():
        return None
    package = _site_packages(root) / "pytriton"
    if not (package / "tritonserver" / "bin" / "tritonserver").is_file() or not (root / "bin" / "python3").exists():
        return None
    return _runtime_at(root, package, marker.get("numpy", "?"), root / "backends")


def find_runtime(location: str | os.PathLike | None = None) -> Runtime | None:
    """The runtime at ``location`` (default: this environment if it qualifies, else the default folder),
    or None when it is not set up yet."""
    _check_platform()
    if location is None:
        current = _current_environment()
        if current is not None:
            return current
        location = default_location()
    return _complete(Path(location).expanduser())


def ensure_runtime(location: str | os.PathLike | None = None, install: bool = True, reinstall: bool = False,
                   notice=None) -> Runtime:
    """The runtime, created first where it is missing (``install``; else a clear error). Creation takes a
    lock beside the folder, so concurrent callers (pytest-xdist workers) create it once."""
    if not reinstall:
        found = find_runtime(location)
        if found is not None:
            return found
    root = Path(location).expanduser() if location is not None else default_location()
    if not install:
        raise UsageError(f"the serving environment {root} is not set up: run `seo-export serve --setup` "
                         f"(it installs nvidia-pytriton {PYTRITON_VERSION} and {STUB_NUMPY} into a virtual "
                         "environment there)")
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not reinstall:
                found = _complete(root)
                if found is not None:  # another process made it while this one waited
                    return found
            _create(root, notice)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    found = _complete(root)
    if found is None:
        raise UsageError(f"the serving environment {root} was created but is not usable; remove it and retry")
    return found


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()
                 and not line.startswith("WARNING: Location")]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise MissingDependencyError(f"{what} failed: {last}")


def _create(root: Path, notice=None) -> None:
    _check_platform()
    if notice:
        notice(f"setting up the serving environment in {root} (once): a virtual environment with "
               f"nvidia-pytriton {PYTRITON_VERSION} (Triton Inference Server {TRITON_SERVER_VERSION}, ~55 MB download) "
               f"and {STUB_NUMPY} for the python-backend stub")
    if root.exists():
        shutil.rmtree(root)
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
         f"creating the virtual environment {root}")
    try:
        # This interpreter's pip installs into the venv: no pip inside it, so creation stays quick.
        _run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python3"), "install", "--quiet",
              "--disable-pip-version-check", "--no-deps", *REQUIREMENTS],
             f"pip install {' '.join(REQUIREMENTS)} into {root}")
        probe = subprocess.run([str(root / "bin" / "python3"), "-c", "import numpy; print(numpy.__version__)"],
                               capture_output=True, text=True)
        numpy_version = probe.stdout.strip()
        if probe.returncode != 0 or not numpy_version.startswith("1."):
            raise MissingDependencyError(f"the serving environment {root} does not import numpy 1.x "
                                         f"({(probe.stderr or probe.stdout).strip().splitlines()[-1:]})")
        (root / MARKER).write_text(json.dumps({"pytriton": PYTRITON_VERSION, "python": python_version(),
                                               "numpy": numpy_version, "base": str(Path(sys.base_prefix).resolve())},
                                              indent=2) + "\n")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
