"""The workflow as users run it: polygraphy's own CLI, `seo-export sanitize`, `run` saving for Polygraphy,
and `inspect` / `validate --model` on every tool's result."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from seo_export.cli.main import main
from seo_export.export.toolchain import restore
from tests.cli.helpers import assert_one_line_stderr
from tests.export.helpers import padded_inputs
from tests.toolchain.round_trips import ROUND_TRIPS, available, polygraphy_tolerance

LOCAL_FP16, SPARSE_FP32 = (("local", "rotary", False), "fp16"), (("sparse", "relative", False), "fp32")


def polygraphy(*args) -> subprocess.CompletedProcess:
    beside = Path(sys.executable).with_name("polygraphy")
    executable = str(beside) if beside.is_file() else shutil.which("polygraphy")
    if executable is None:
        pytest.skip("the polygraphy command is not installed")
    return subprocess.run([executable, *map(str, args)], capture_output=True, text=True, timeout=300)


def validate(path) -> int:
    return main(["validate", "--model", str(path), "--max-len", "24", "--no-locate"])


@pytest.mark.parametrize("variant,precision", [LOCAL_FP16, SPARSE_FP32], ids=["local-fp16", "sparse-fp32"])
def test_polygraphy_sanitize_cli_then_seo_export_and_polygraphy_run(exports, tmp_path, variant, precision):
    """`polygraphy surgeon sanitize --fold-constants`, metadata restored by `seo-export sanitize --tool none`,
    then `polygraphy run --onnxrt` against outputs `seo-export run` saved, inspect and validate."""
    pytest.importorskip("polygraphy")
    exported, sanitized, restored = exports(variant, precision), tmp_path / "sanitized.onnx", tmp_path / "ok.onnx"
    done = polygraphy("surgeon", "sanitize", "--fold-constants", exported, "-o", sanitized)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not onnx.load(sanitized).metadata_props  # what the README says it drops
    assert main(["sanitize", str(sanitized), "--tool", "none", "--restore-from", str(exported),
                 "-o", str(restored)]) == 0
    np.savez(tmp_path / "in.npz", **padded_inputs(3, 13))
    assert main(["run", str(exported), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.json"),
                 "--save-inputs", str(tmp_path / "in.json"), "--warmup", "0", "--iterations", "1"]) == 0
    tolerance = polygraphy_tolerance(tmp_path / "out.json", precision)
    tolerance = ["--atol", *(f"{k}:{v}" for k, v in tolerance["atol"].items()), "--rtol", "0"] if tolerance else []
    compared = polygraphy("run", restored, "--onnxrt", "--load-inputs", tmp_path / "in.json",
                          "--load-outputs", tmp_path / "out.json", *tolerance)
    assert compared.returncode == 0 and "PASSED" in compared.stdout, compared.stdout[-3000:]
    assert main(["inspect", str(restored)]) == 0
    assert validate(restored) == 0


VALIDATED = [(name, LOCAL_FP16 if i % 2 else SPARSE_FP32) for i, name in enumerate(ROUND_TRIPS)]


@pytest.mark.parametrize("tool,case", VALIDATED, ids=[name for name, _ in VALIDATED])
def test_validate_accepts_each_tools_result(exports, tmp_path, tool, case):
    """Metadata put back where the tool drops it, as `seo-export sanitize` does (ORT's files keep it)."""
    if not available(tool):
        pytest.skip(f"{tool} is not installed")
    trip, _ = ROUND_TRIPS[tool]
    original = onnx.load(exports(*case))
    result = trip(onnx.load(exports(*case)), tmp_path)
    restore(result, original)
    onnx.save(result, str(tmp_path / "result.onnx"))
    assert validate(tmp_path / "result.onnx") == 0


def test_sanitize_runs_polygraphy_and_restores(exports, tmp_path, capsys):
    pytest.importorskip("polygraphy")
    out = tmp_path / "out.onnx"
    exported = onnx.load(exports(*LOCAL_FP16))
    assert main(["sanitize", str(exports(*LOCAL_FP16)), "-o", str(out)]) == 0
    restored = (f"restored {len(exported.metadata_props)} metadata entries, "
                "overload LocalWindowAttention_zero_bias[zero_bias]")
    assert restored in capsys.readouterr().err
    assert onnx.load(out).metadata_props == exported.metadata_props


def test_sanitize_refuses_a_result_that_is_not_the_model(exports, tmp_path, capsys):
    """Restoring from another export: its seo nodes differ, so nothing is written and the exit is 1."""
    out = tmp_path / "out.onnx"
    code = main(["sanitize", str(exports(*LOCAL_FP16)), "--tool", "none", "--restore-from", str(exports(*SPARSE_FP32)),
                 "-o", str(out)])
    assert code == 1 and not out.exists()
    assert_one_line_stderr(capsys.readouterr().err, "seo nodes", "not written")


def test_sanitize_compares_outputs_before_writing(exports, tmp_path, capsys):
    """A changed weight keeps every seo node and all metadata: only the output check can see it."""
    model = onnx.load(exports(*SPARSE_FP32))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 2 and not t.name.startswith("model."))
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.01, weight.name))
    onnx.save(model, str(tmp_path / "changed.onnx"))
    out = tmp_path / "out.onnx"
    code = main(["sanitize", str(tmp_path / "changed.onnx"), "--tool", "none", "--restore-from",
                 str(exports(*SPARSE_FP32)), "-o", str(out)])
    assert code == 1 and not out.exists()
    assert_one_line_stderr(capsys.readouterr().err, "outputs: ", "round-trip tolerance", "not written")


def test_missing_tools_are_one_line_errors(exports, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "polygraphy.json", None)
    assert main(["sanitize", str(exports(*LOCAL_FP16)), "--tool", "onnxslim", "-o", str(tmp_path / "o.onnx")]) == 3
    assert_one_line_stderr(capsys.readouterr().err, "onnxslim is not installed", "seo-export[tools]")
    assert main(["run", str(exports(*LOCAL_FP16)), "--output", str(tmp_path / "out.json")]) == 3
    assert_one_line_stderr(capsys.readouterr().err, "polygraphy", ".npz")
    assert main(["run", str(exports(*LOCAL_FP16)), "--output", str(tmp_path / "out.txt")]) == 2
    assert_one_line_stderr(capsys.readouterr().err, ".npz", ".json")
