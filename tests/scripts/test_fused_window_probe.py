"""scripts/fused_window_probe: the fused kernel is compiled, agrees with the body and is timed; a kernel
that admits one key too many is refused before any timing is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "scripts" / "fused_window_probe" / "probe.py"
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="the probe compiles its kernel with gcc")


def probe(out: Path, *extra: str) -> subprocess.CompletedProcess:
    # A process of its own: the probe sets OpenMP's environment before libgomp loads.
    return subprocess.run([sys.executable, str(PROBE), "--seq", "200", "--heads", "1", "--rounds", "2",
                           "--threads", "1", "--out", str(out), *extra], capture_output=True, text=True, timeout=300)


def test_the_fused_kernel_agrees_with_the_body_and_is_timed_against_the_peak(tmp_path):
    result = probe(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads((tmp_path / "fused_window_probe.json").read_text())["rows"][0]
    assert row["seq"] == 200 and row["max_abs_fused_vs_body"] <= 1e-4
    assert set(row["fraction_of_peak"]) == {"body", "fused", "fused GEMMs only"}
    assert all(f["median"] > 0 for f in row["fraction_of_peak"].values()) and row["peak_flop_per_s"] > 0
    assert "| 200 | fused |" in (tmp_path / "fused_window_probe.md").read_text()


def test_a_kernel_that_admits_one_key_too_many_is_refused_and_nothing_is_written(tmp_path):
    result = probe(tmp_path, "--fault")
    assert result.returncode != 0
    assert "the fused kernel differs from the body by" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())
