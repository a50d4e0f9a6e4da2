"""Start a Triton Inference Server over a model repository, wait until it is ready, stop it cleanly.

The server runs as the leader of its own process group, so its python-backend stubs (one process per
model instance) can be found and ended with it; the python backend's shared-memory regions carry a
prefix of this server's own (``--backend-config=python,shm-region-prefix-name=...``), so whatever a
killed server leaves in ``/dev/shm`` is removed by name. ``stop()`` sends SIGTERM (the server finishes
in-flight requests, unloads its models and exits), waits ``exit_timeout_s`` plus a margin, then kills
the group: nothing it started outlives it. An open client connection keeps the server waiting until
``--exit-timeout-secs``, so that timeout is short by default.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from seo_export.errors import UsageError
from seo_export.serve.runtime import Runtime

#: The bundled server's backends; models of other backends or platforms cannot load in it.
BUNDLED_BACKENDS = ("python",)
BUNDLED_PLATFORMS = ("ensemble",)
#: The custom configuration (``MODEL/configs/python.pbtxt``) `seo-export serve` selects: a model's
#: python-backend configuration where ``config.pbtxt`` names a backend the bundled server lacks.
PYTHON_CONFIG_NAME = "python"
SHM_ROOT = Path("/dev/shm")


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started the server dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG; strictly, when the starting thread ends), so a killed `seo-export serve` or
    test run leaves no server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerOptions:
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    address: str = "127.0.0.1"
    exit_timeout_s: int = 5
    config_name: str | None = PYTHON_CONFIG_NAME
    log_verbose: int = 0
    extra_args: list[str] = field(default_factory=list)


def _gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists()


def model_configs(repository: Path, config_name: str | None = PYTHON_CONFIG_NAME) -> dict[str, Path]:
    """Model name -> the configuration file the server will read for it (the custom one where present)."""
    found = {}
    for model in sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith(".")):
        custom = model / "configs" / f"{config_name}.pbtxt" if config_name else None
        if custom is not None and custom.is_file():
            found[model.name] = custom
        elif (model / "config.pbtxt").is_file():
            found[model.name] = model / "config.pbtxt"
    return found


def _field(text: str, name: str) -> str | None:
    match = re.search(rf'^\s*{name}\s*:\s*"([^"]*)"', text, re.MULTILINE)
    return match.group(1) if match else None


def check_repository(repository: str | os.PathLike, config_name: str | None = PYTHON_CONFIG_NAME) -> dict[str, str]:
    """Model name -> backend or platform, for every model of ``repository``; a clear error for an empty
    repository or a model the bundled server cannot load (a TensorRT plan, an onnxruntime-only model)."""
    repository = Path(repository)
    if not repository.is_dir():
        raise UsageError(f"model repository {repository} does not exist (write one with `seo-export triton-repo`)")
    configs = model_configs(repository, config_name)
    if not configs:
        raise UsageError(f"{repository} holds no model (no MODEL/config.pbtxt): "
                         "write one with `seo-export triton-repo`")
    kinds = {}
    for name, path in configs.items():
        text = path.read_text()
        backend, platform = _field(text, "backend"), _field(text, "platform")
        kind = backend or platform or "?"
        if backend not in BUNDLED_BACKENDS and platform not in BUNDLED_PLATFORMS:
            raise UsageError(f"model {name} ({path.relative_to(repository)}) runs on {kind}, which the bundled Triton "
                             f"server (python backend only) does not have: serve it with a Triton container image "
                             f"that has the {kind} backend (see {name}/README.md)")
        kinds[name] = kind
    return kinds


class TritonServer:
    """One ``tritonserver`` process over ``repository``: ``start()`` returns when it is ready."""

    def __init__(self, runtime: Runtime, repository: str | os.PathLike, options: ServerOptions | None = None,
                 log_path: str | os.PathLike | None = None):
        self.runtime = runtime
        self.repository = Path(repository).resolve()
        self.options = options or ServerOptions()
        self.log_path = Path(log_path) if log_path else None  # None: the server writes to this process's stdout/stderr
        self.shm_prefix = f"seoexport_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.process: subprocess.Popen | None = None
        self._log_file = None

    # -- command and environment ----------------------------------------------------------------------------------
    def command(self) -> list[str]:
        o = self.options
        command = [
            str(self.runtime.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.runtime.backends}",
            f"--cache-directory={self.runtime.caches}",
            f"--http-address={o.address}", f"--http-port={o.http_port}",
            f"--grpc-address={o.address}", f"--grpc-port={o.grpc_port}",
            f"--metrics-address={o.address}", f"--metrics-port={o.metrics_port}",
            f"--exit-timeout-secs={o.exit_timeout_s}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--log-verbose={o.log_verbose}",
        ]
        if not _gpu_present():
            command += ["--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0"]
        if o.config_name:
            command.append(f"--model-config-name={o.config_name}")
        return command + list(o.extra_args)

    @property
    def http_url(self) -> str:
        return f"{self.options.address}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.address}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.address}:{self.options.metrics_port}/metrics"

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self, ready_timeout_s: float = 120.0, cancel=None) -> TritonServer:
        """Start the server and wait until it is ready (or ``cancel``, a threading.Event, is set: then it
        returns at once with the server still starting; ``stop()`` ends it)."""
        if self.process is not None:
            raise RuntimeError("this server was started already")
        output = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = output = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), env=self.runtime.environment(), stdin=subprocess.DEVNULL,
                                        stdout=output, stderr=subprocess.STDOUT if output else None,
                                        start_new_session=True, preexec_fn=_terminate_with_parent)
        try:
            self.wait_ready(ready_timeout_s, cancel)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout_s: float, cancel=None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UsageError(f"tritonserver exited with status {self.process.returncode} before it was ready"
                                 f"{self._log_hint()}")
            if self.is_ready() or (cancel is not None and cancel.is_set()):
                return
            if cancel is not None:
                cancel.wait(0.1)
            else:
                time.sleep(0.1)
        raise UsageError(f"tritonserver was not ready within {timeout_s:.0f} s{self._log_hint()}")

    def _log_hint(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return " (its log is above)"
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.startswith("E")]
        return f": {lines[-1][:400]} (log: {self.log_path})" if lines else f" (log: {self.log_path})"

    def group_members(self) -> list[int]:
        """Live processes of the server's process group (the server and its stubs)."""
        if self.process is None:
            return []
        return processes_in_group(self.process.pid)

    def stop(self) -> int | None:
        """SIGTERM, a wait of ``exit_timeout_s`` + 5 s, then SIGKILL to the whole group; remove the group's
        shared-memory regions. Returns the server's exit status (None if it was never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=self.options.exit_timeout_s + 5)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        self._kill_group()
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self._wait_group_gone(5.0)
        self.remove_shm()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.process.returncode

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_group_gone(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.group_members() and time.monotonic() < deadline:
            time.sleep(0.05)

    def shm_regions(self) -> list[Path]:
        return sorted(SHM_ROOT.glob(f"{self.shm_prefix}*")) if SHM_ROOT.is_dir() else []

    def remove_shm(self) -> None:
        for path in self.shm_regions():
            try:
                path.unlink()
            except OSError:
                pass

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def processes_in_group(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes whose process group is ``pgid``, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def temporary_log(prefix: str = "tritonserver-") -> Path:
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
    os.close(handle)
    return Path(name)
