"""``seo-export bench`` as users run it: a tiny sweep writing a report directory, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from seo_export.bench.sweep import trt_unavailable_reason
from seo_export.cli.common import progress_lines
from seo_export.cli.main import main

TINY = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "4", "--intermediate-size", "64"]


def seo_export(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "seo_export.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=env)


def test_tiny_bench_writes_a_report_dir(tmp_path):
    report_dir = tmp_path / "bench"
    result = seo_export("bench", "--attention", "local", "--positional", "rotary", *TINY, "--batch", "2",
                        "--seq", "8,16", "--warmup", "1", "--iterations", "2", "--no-memory",
                        "--report-dir", str(report_dir), env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert result.returncode == 0, result.stderr
    assert "local/rotary" in result.stdout and "vs torch" in result.stdout  # the summary table
    # stderr is a pipe here, as in CI: a plain line per progress step, no live bar.
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert progress == ["[0/3] local/rotary: exporting to ONNX", "[1/3] local/rotary: exported",
                        "[1/3] local/rotary b2 s8: timing torch, ort", "[2/3] local/rotary b2 s8: done",
                        "[2/3] local/rotary b2 s16: timing torch, ort", "[3/3] local/rotary b2 s16: done"]
    assert "\x1b[" not in result.stderr  # no terminal control codes in a log
    report = json.loads((report_dir / "report.json").read_text())
    assert report["kind"] == "bench" and report["schema_version"] == "1"
    assert {(r["backend"], r["seq"]) for r in report["results"]} == {(b, s) for b in ("torch", "ort") for s in (8, 16)}
    assert all(r["latency_ms"]["p50"] > 0 and r["speedup_vs_torch"] > 0 for r in report["results"])
    bench = report["environment"]["bench"]
    assert bench["command"].startswith("seo-export bench --attention local")
    assert report["environment"]["threads"]["ort_intra_op"] >= 1
    md = (report_dir / "report.md").read_text()
    assert "| local/rotary | ort | 2 | 16 |" in md and "## Settings" in md and "command: `seo-export bench" in md
    # Eager PyTorch's speed depends on the allocator, so its settings are recorded.
    assert report["environment"]["allocator"]["env"]["MALLOC_ARENA_MAX"] == "2"
    assert "- allocator: " in md and "MALLOC_ARENA_MAX=2" in md
    html = (report_dir / "report.html").read_text()
    assert "Time against sequence length" in html and "data:image/png;base64," in html
    if trt_unavailable_reason():  # no GPU: eager FP16 is not a baseline here, and was not timed
        assert "- eager FP16 baseline (torch-fp16): not timed" in md
        assert {r["precision"] for r in report["results"]} == {"fp32"}
    if trt_unavailable_reason():  # the default backends include trt: skipped with its reason, not an error
        assert "skipped trt: " in result.stderr
        assert report["environment"]["skipped"][0]["backend"] == "trt"
        assert "skipped trt: " in md


def one_line_error(capsys, argv, *fragments):
    code = main(["bench", *argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("seo-export bench: error: ")
    for fragment in fragments:
        assert fragment in err[0]


@pytest.mark.parametrize("argv,fragments", [
    (["--all", "--attention", "local"], ["--all benches every"]),
    (["--attention", "flash"], ["unknown attention 'flash'"]),
    (["--attention", "sparse", "--causal"], ["not defined"]),
    (["--backends", "torch,tvm"], ["unknown backend 'tvm'"]),
    (["--batch", "1,x"], ["--batch takes comma-separated positive integers"]),
    (["--seq", "0"], ["--seq takes comma-separated positive integers"]),
    (["--iterations", "0"], ["--iterations takes an integer >= 1"]),
    (["--hidden-size", "30"], ["must be divisible by num_heads"]),
    (["--config", "/nonexistent/c.json"], ["does not exist"]),
])
def test_usage_errors_are_one_line(capsys, argv, fragments):
    one_line_error(capsys, argv, *fragments)


def test_unwritable_report_dir_fails_before_the_sweep(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_line_error(capsys, ["--report-dir", str(blocker)], "not a directory")
    one_line_error(capsys, ["--report-dir", str(blocker / "sub")], "not a writable directory")
    assert not (blocker.parent / "sub").exists()


def test_trt_alone_without_tensorrt_is_a_one_line_error(capsys):
    if trt_unavailable_reason() is None:
        pytest.skip("TensorRT is available here")
    one_line_error(capsys, ["--backends", "trt", *TINY], "nothing to benchmark: trt skipped", "TensorRT")


def test_progress_is_plain_lines_where_the_stream_is_not_a_terminal(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # CI often sets it; rich then takes any stream for a terminal
    stream = io.StringIO()
    with progress_lines(stream) as progress:
        progress("exporting", 0, 2)
        progress("timing b1 s512", 1, 2)
        progress("a step without counts")
    assert stream.getvalue().splitlines() == ["[0/2] exporting", "[1/2] timing b1 s512", "a step without counts"]


def test_progress_is_a_transient_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with progress_lines(stream) as progress:
        progress("exporting", 0, 2)
    assert "[0/2] exporting" not in stream.getvalue()  # no log lines: the bar redraws in place, then goes


def test_torch_triton_is_benched_where_the_kernels_run_and_skipped_with_the_reason_elsewhere(
        capsys, monkeypatch, tmp_path):
    """Under Triton's interpreter (set by conftest where there is no GPU) it runs, in FP32 on the CPU."""
    from seo_export.backends.torch_triton import triton_unavailable_reason

    if triton_unavailable_reason():
        pytest.skip(triton_unavailable_reason())
    argv = ["bench", "--attention", "local", *TINY, "--seq", "12", "--warmup", "0", "--iterations", "1",
            "--no-memory", "--backends", "torch,torch-triton", "--report-dir", str(tmp_path)]
    assert main(argv) == 0
    results = {r["backend"]: r for r in json.loads((tmp_path / "report.json").read_text())["results"]}
    assert set(results) == {"torch", "torch-triton"}
    on_gpu = not os.environ.get("TRITON_INTERPRET") and torch_cuda()
    assert results["torch-triton"]["precision"] == ("fp16" if on_gpu else "fp32")
    assert results["torch-triton"]["threads"] >= 1 and results["torch-triton"]["speedup_vs_torch"] > 0
    capsys.readouterr()
    if torch_cuda():
        return
    monkeypatch.delenv("TRITON_INTERPRET")
    assert main(argv[:-2]) == 0
    err = capsys.readouterr().err
    assert "skipped torch-triton: torch-triton runs the Triton kernels on a CUDA GPU and " in err
    assert "TRITON_INTERPRET=1 runs them on the CPU" in err.splitlines()[-1], "the reason on one line"


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
