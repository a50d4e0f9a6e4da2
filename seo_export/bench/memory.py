"""Peak resident memory of one call, measured in a fresh subprocess (CPU has no allocator stats).

Not getrusage's ru_maxrss: on Linux a child inherits it from its parent across fork + exec,
so a probe started from a large benchmark process would report the parent's peak. VmHWM
belongs to the child's own address space, and writing "5" to /proc/self/clear_refs restarts
it after the setup (building the model, loading the graph, one warm-up call), which can peak
higher than the call.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import importlib, json, sys
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
fn = getattr(importlib.import_module(sys.argv[1]), sys.argv[2])(**json.loads(sys.argv[3]))
if sys.argv[4] == "warmup":
    fn()  # one-time costs (thread pools, kernel caches) out of the measured call
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    print(json.dumps({"peak_mb": None}))
    sys.exit(0)
before = status("VmRSS")
fn()
print(json.dumps({"peak_mb": (status("VmHWM") - before) / 1024}))
"""


def peak_memory_mb(module: str, setup: str, kwargs: dict, timeout: float = 900.0,
                   warmup: bool = True) -> float | None:
    """Peak RSS growth of ``getattr(module, setup)(**kwargs)()``; None when it failed, ran out of
    time or memory, or this kernel cannot restart the peak mark.

    ``warmup`` makes one full call before measuring. Leave it off for runtimes that keep memory
    between calls (ONNX Runtime's arena): their setup should warm up on a tiny input instead.
    """
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE, module, setup, json.dumps(kwargs),
                                 "warmup" if warmup else "cold"],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]
