"""Peak resident memory of one call, measured in a fresh subprocess (CPU has no allocator stats)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, resource, sys
import importlib
module = importlib.import_module(sys.argv[1])
setup = getattr(module, sys.argv[2])
fn = setup(**json.loads(sys.argv[3]))
def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
before = rss_kb()
fn()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (peak - before) / 1024}))
"""


def peak_memory_mb(module: str, setup: str, kwargs: dict, timeout: float = 600) -> float | None:
    """Peak RSS growth of ``getattr(module, setup)(**kwargs)()``; None if it ran out of time or memory."""
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE, module, setup, json.dumps(kwargs)],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]
