"""The bench engine: report structure, same-run speedups, skips with reasons, the memory probe.

Tiny models and few iterations; nothing here asserts how fast anything is.
"""

from __future__ import annotations

import math

import pytest
import torch

from seo_export.bench import sweep
from seo_export.errors import UsageError
from seo_export.models.config import TransformerConfig
from seo_export.parity.report import check_report

TINY = TransformerConfig(hidden_size=32, num_layers=1, num_heads=4, vocab_size=100, intermediate_size=64,
                         attention_window_size=8, attention_num_landmarks=4, positional_encoding_max_len=64)
BATCHES, SEQS = (1, 2), (8, 24)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep with the interleaved timer spied on: which contenders shared each timed run."""
    calls = []
    original = sweep.interleaved_times

    def spy(contenders, **kwargs):
        samples = original(contenders, **kwargs)
        calls.append({name: list(times) for name, times in samples.items()})
        return samples

    sweep.interleaved_times = spy
    try:
        settings = sweep.SweepSettings(variants=[sweep.Variant("local", "rotary")], base_config=TINY,
                                       backends=("torch", "ort", "trt"), batches=BATCHES, seqs=SEQS,
                                       warmup=1, iterations=5, memory=False)
        workdir = tmp_path_factory.mktemp("sweep")
        events = []
        outcome = sweep.run_sweep(settings, progress=lambda m, d, t: events.append((m, d, t)), workdir=workdir)
    finally:
        sweep.interleaved_times = original
    return outcome, calls, events, workdir


def by_point(report):
    return {(r["backend"], r["batch"], r["seq"]): r for r in report["results"]}


def test_report_has_every_point_and_backend(swept):
    outcome, _, _, _ = swept
    report = outcome.report
    check_report(report)
    assert report["kind"] == "bench"
    points = by_point(report)
    assert set(points) == {(b, n, s) for b in ("torch", "ort") for n in BATCHES for s in SEQS}
    for r in report["results"]:
        assert r["variant"] == {"attention": "local", "positional": "rotary", "causal": False}
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert math.isclose(r["throughput_seq_per_s"], r["batch"] / (lat["p50"] / 1e3), rel_tol=1e-9)
        assert "peak_mb" not in r  # memory=False


def test_speedups_come_from_the_same_interleaved_run(swept):
    outcome, calls, _, _ = swept
    # One timed run per point, holding both backends, each sampled the same number of times.
    assert len(calls) == len(BATCHES) * len(SEQS)
    for samples in calls:
        assert set(samples) == {"torch", "ort"}
        assert len(samples["torch"]) == len(samples["ort"]) == 5
    points = by_point(outcome.report)
    for batch in BATCHES:
        for seq in SEQS:
            torch_r, ort_r = points[("torch", batch, seq)], points[("ort", batch, seq)]
            assert torch_r["speedup_vs_torch"] == pytest.approx(1.0)
            expected = torch_r["latency_ms"]["p50"] / ort_r["latency_ms"]["p50"]
            assert ort_r["speedup_vs_torch"] == pytest.approx(expected, rel=1e-9)
            assert torch_r["speedup_vs_torch_ci95"] is None
            low, high = ort_r["speedup_vs_torch_ci95"]
            assert low <= ort_r["speedup_vs_torch"] <= high
    # The intervals are those of the spied samples, torch and ORT paired round by round.
    recorded = sorted(tuple(points[("ort", b, s)]["speedup_vs_torch_ci95"]) for b in BATCHES for s in SEQS)
    spied = sorted(sweep.speedup_interval(c["torch"], c["ort"]) for c in calls)
    assert recorded == spied
    # And the p50s in the report are those of the spied samples (no second measurement).
    recorded = sorted(points[("ort", b, s)]["latency_ms"]["p50"] for b in BATCHES for s in SEQS)
    spied = sorted(sweep.median(c["ort"]) * 1e3 for c in calls)
    assert recorded == pytest.approx(spied)


def test_threads_settings_and_skips_are_recorded(swept):
    outcome, _, events, workdir = swept
    env = outcome.report["environment"]
    assert env["threads"]["torch"] >= 1 and env["threads"]["ort_intra_op"] >= 1
    for r in outcome.report["results"]:
        assert isinstance(r["threads"], int) and r["threads"] >= 1
    assert env["bench"]["iterations"] == 5 and env["bench"]["warmup"] == 1
    assert env["bench"]["model"]["hidden_size"] == 32
    reason = sweep.trt_unavailable_reason()
    if reason:
        assert {"backend": "trt", "reason": reason} in env["skipped"]
        assert "trt" not in {r["backend"] for r in outcome.report["results"]}
    # Progress: export + one step per point, ending complete; the ONNX file was cached once.
    assert events[-1][1] == events[-1][2] == 1 + len(BATCHES) * len(SEQS)
    assert [p.name for p in workdir.glob("*.onnx")] == ["local-rotary.onnx"]


def test_learned_positions_skip_points_beyond_the_table():
    config = TINY.replace(positional_encoding_type="learned")
    assert sweep.point_skip_reason(config, 64) is None
    assert "exceeds the learned positional table" in sweep.point_skip_reason(config, 65)


def test_only_trt_without_tensorrt_is_an_error():
    if sweep.trt_unavailable_reason() is None:
        pytest.skip("TensorRT is available here")
    with pytest.raises(UsageError, match="nothing to benchmark: trt skipped"):
        sweep.usable_backends(["trt"])
    assert sweep.usable_backends(["torch", "trt"])[0] == ["torch"]


@pytest.mark.parametrize("changes,message", [
    ({"backends": ("torch", "tvm")}, "unknown backend 'tvm'"),
    ({"variants": [sweep.Variant("sparse", "rotary", causal=True)]}, "not defined for attention_type 'sparse'"),
    ({"seqs": (0,)}, "positive integers"),
    ({"iterations": 0}, "--iterations"),
])
def test_bad_settings_fail_before_any_work(changes, message):
    settings = sweep.SweepSettings(variants=[sweep.Variant("local", "rotary")], base_config=TINY)
    for key, value in changes.items():
        setattr(settings, key, value)
    with pytest.raises(UsageError, match=message):
        sweep.check_settings(settings)


def test_variant_selection():
    assert len(sweep.all_variants()) == 16
    assert [v.label for v in sweep.parse_variants(["local", "sparse"], ["rotary"], False)] == [
        "local/rotary", "sparse/rotary"]
    with pytest.raises(UsageError, match="unknown attention 'flash'"):
        sweep.parse_variants(["flash"], ["rotary"], False)


def test_memory_probe_measures_the_child_not_the_parent(swept):
    """getrusage's peak is inherited across fork + exec; the probe must not report this process's peak."""
    _, _, _, workdir = swept
    ballast = bytearray(400 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: this process's peak is now >= 400 MB
    peak = sweep.peak_rss_growth_mb("probe_ort", {"path": str(workdir / "local-rotary.onnx"), "vocab_size": 100,
                                                  "seed": 0, "batch": 2, "seq": 24, "threads": 1})
    del ballast
    assert peak is not None and 0 <= peak < 100


def test_eager_fp16_is_timed_only_as_the_baseline_of_fp16_backends_on_a_gpu():
    assert sweep.eager_fp16_skip_reason(["torch", "trt"], "cuda") is None
    assert "not timed on a CPU" in sweep.eager_fp16_skip_reason(["torch", "trt"], "cpu")
    assert "no FP16 backend" in sweep.eager_fp16_skip_reason(["torch", "ort"], "cuda")
    assert "eager PyTorch (torch) was not benched" in sweep.eager_fp16_skip_reason(["ort", "trt"], "cuda")


def test_on_a_cpu_every_point_is_fp32_against_eager_fp32(swept):
    outcome, _, _, _ = swept
    assert "not timed on a CPU" in outcome.settings["eager_fp16"] or sweep.accelerator_device() == "cuda"
    for r in outcome.report["results"]:
        assert r["precision"] == "fp32" and "speedup_vs_torch_fp16" not in r


def test_eager_fp16_runs_on_a_copy_of_the_model():
    from seo_export.models.build import build_model

    model = build_model(TINY, seed=0)
    runners = sweep.eager_runners(model, "cpu", fp16=True)
    assert list(runners) == ["torch", sweep.EAGER_FP16]
    for runner in runners.values():
        runner.activate()
    dtypes = {name: {p.dtype for p in runner.model.parameters()} for name, runner in runners.items()}
    assert dtypes == {"torch": {torch.float32}, sweep.EAGER_FP16: {torch.float16}}
    assert list(sweep.eager_runners(model, "cpu", fp16=False)) == ["torch"]


def test_fp16_backends_get_both_speedups_from_one_interleaved_run(monkeypatch):
    """Where eager FP16 is timed (forced here on the CPU), it joins the same interleaved rounds, and
    every point carries its speedup against eager FP32 and against eager FP16."""
    calls = []
    original = sweep.interleaved_times

    def spy(contenders, **kwargs):
        calls.append(samples := original(contenders, **kwargs))
        return samples

    monkeypatch.setattr(sweep, "interleaved_times", spy)
    monkeypatch.setattr(sweep, "eager_fp16_skip_reason", lambda backends, device: None)
    settings = sweep.SweepSettings(variants=[sweep.Variant("local", "rotary")], base_config=TINY,
                                   backends=("torch", "ort"), batches=(1,), seqs=(8,), warmup=1, iterations=5,
                                   memory=False)
    outcome = sweep.run_sweep(settings)
    [samples] = calls
    assert list(samples) == ["torch", sweep.EAGER_FP16, "ort"]
    points = {r["backend"]: r for r in outcome.report["results"]}
    assert points[sweep.EAGER_FP16]["precision"] == "fp16" and points["ort"]["precision"] == "fp32"
    for name, r in points.items():
        assert r["speedup_vs_torch"] == pytest.approx(sweep.median(samples["torch"]) / sweep.median(samples[name]))
        assert r["speedup_vs_torch_fp16"] == pytest.approx(sweep.median(samples[sweep.EAGER_FP16])
                                                           / sweep.median(samples[name]))
    assert points[sweep.EAGER_FP16]["speedup_vs_torch_fp16"] == 1.0
    assert points[sweep.EAGER_FP16]["speedup_vs_torch_fp16_ci95"] is None
    assert points["ort"]["speedup_vs_torch_fp16_ci95"] == list(sweep.speedup_interval(samples[sweep.EAGER_FP16],
                                                                                     samples["ort"]))
    check_report(outcome.report)
