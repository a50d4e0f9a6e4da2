"""The bench report's speedups and plots: FP16 engines against eager FP16 as well as FP32, no scaling
plot from one sequence length, and legends beside the axes rather than over the data."""

from __future__ import annotations

import re

import pytest

from seo_export.parity import report as R
from seo_export.parity.report import plots
from seo_export.parity.report.markdown import summary_note

ENV = {"python": "3.11", "platform": "linux", "cpu": {"model": "cpu", "count": 2}, "gpu": "NVIDIA H200",
       "threads": {"torch": 2}, "packages": {}}
LOCAL = R.make_variant("local", "rotary")
# p50 10 ms, 12 ms, 4 ms, 3 ms: eager FP32, eager FP16, ORT (FP32), TensorRT (FP16)
P50_S = {"torch": 0.010, "torch-fp16": 0.012, "ort": 0.004, "trt": 0.003}
PRECISION = {"torch": "fp32", "torch-fp16": "fp16", "ort": "fp32", "trt": "fp16"}


def gpu_point(backend: str, seq: int = 512) -> dict:
    p50 = P50_S[backend]
    return R.bench_result(LOCAL, backend, 1, seq, [p50] * 3, speedup_vs_torch=P50_S["torch"] / p50,
                          speedup_vs_torch_fp16=P50_S["torch-fp16"] / p50, precision=PRECISION[backend],
                          speedup_fp16_ci95=(3.5, 4.5) if backend == "trt" else None)


def gpu_report(seqs=(512,)) -> dict:
    return R.bench_report([gpu_point(b, s) for s in seqs for b in P50_S], environment=ENV)


def cpu_report(seqs) -> dict:
    results = [R.bench_result(LOCAL, backend, batch, seq, [0.001 * seq / 64 * (1 if backend == "torch" else 0.5)],
                              speedup_vs_torch=1.0 if backend == "torch" else 2.0, precision="fp32")
               for backend in ("torch", "ort") for batch in (1, 2) for seq in seqs]
    return R.bench_report(results, environment=ENV)


# ----------------------------------------------------------------------------- like with like

def test_fp16_engines_are_headlined_against_eager_fp16():
    points = {r["backend"]: r for r in gpu_report()["results"]}
    trt = points["trt"]
    assert trt["speedup_vs_torch"] == pytest.approx(10 / 3) and trt["speedup_vs_torch_fp16"] == pytest.approx(4.0)
    assert R.schema.headline_speedup(trt) == (pytest.approx(4.0), [3.5, 4.5])
    assert R.schema.headline_speedup(points["ort"]) == (pytest.approx(2.5), None)  # FP32: against eager FP32
    old = {k: v for k, v in trt.items() if k not in ("precision", "speedup_vs_torch_fp16")}
    assert R.schema.headline_speedup(old)[0] == pytest.approx(10 / 3)  # a report from before the fields


def test_tables_show_both_speedups_and_say_which_is_the_headline():
    report = gpu_report()
    md = R.render_markdown(report)
    assert "| seq/s | vs torch FP32 (95% CI) | vs torch FP16 (95% CI) | Peak MB |" in md
    assert "| local/rotary | trt | 1 | 512 | 3.00 | 3.00 | 3.00 | 333.3 | 3.33x | 4.00x (3.50-4.50) | - | - |" in md
    assert "| local/rotary | torch-fp16 | 1 | 512 |" in md and "| 0.83x | 1.00x |" in md
    note = summary_note(report)
    assert note.startswith("Headline speedup: FP16 backends (torch-fp16, trt) against eager FP16") and note in md
    page = R.render_html(report)
    assert "Headline speedup: FP16 backends (torch-fp16, trt)" in page and "at the backend&#x27;s precision" in page


def test_reports_without_eager_fp16_keep_one_speedup_column():
    report = cpu_report((256, 512))
    md = R.render_markdown(report)
    assert "| seq/s | vs torch (95% CI) | Peak MB |" in md and "FP16" not in md
    assert summary_note(report) is None


@pytest.mark.parametrize("field,value,fragment", [
    ("precision", "fp8", "precision: expected one of fp32, fp16, bf16"),
    ("speedup_vs_torch_fp16", "4x", "speedup_vs_torch_fp16: expected number or null"),
    ("speedup_vs_torch_fp16_ci95", [3.5], "speedup_vs_torch_fp16_ci95: expected [low, high]"),
])
def test_the_checker_knows_the_new_fields(field, value, fragment):
    report = gpu_report()
    report["results"][3][field] = value
    with pytest.raises(R.ReportSchemaError, match=re.escape(fragment)):
        R.check_report(report)


# ----------------------------------------------------------------------------- scaling plots

def test_one_sequence_length_draws_no_scaling_plot_and_says_why():
    one_length = cpu_report((512,))
    captions = [caption for caption, _ in R.html.figures(one_length)]
    assert len(captions) == 2 and captions[0] == "p50 latency" and captions[1].startswith("Speedup")
    page = R.render_html(one_length)
    assert ("Time against sequence length: not drawn: no series has values at two or more sequence lengths "
            "(measured: 512); a plot against sequence length needs at least two") in page
    captions = [caption for caption, _ in R.html.figures(cpu_report((256, 512)))]
    assert "Time against sequence length" in captions and "not drawn" not in R.render_html(cpu_report((256, 512)))


def test_points_a_log_axis_cannot_show_do_not_count_as_a_length():
    results = [R.bench_result(LOCAL, "ort", 1, seq, [0.01], peak_mb=peak) for seq, peak in ((256, 5.0), (512, 0.0))]
    page = R.render_html(R.bench_report(results, environment=ENV))  # no ValueError from the chart
    assert "Peak memory against sequence length: not drawn" in page
    assert "Time against sequence length: not drawn" not in page


def test_line_charts_leave_out_one_point_series():
    series = {"two points": [(256, 1.0), (512, 2.0)], "one point": [(512, 3.0)], "one length twice": [(8, 1), (8, 2)]}
    assert list(plots.plottable_series(series)) == ["two points"]
    fig = plots.line_chart(series, title="t", xlabel="x", ylabel="y")
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["two points"]
    with pytest.raises(ValueError, match="no series has two distinct x"):
        plots.line_chart({"one point": [(512, 3.0)]}, title="t", xlabel="x", ylabel="y")


@pytest.mark.parametrize("count", [1, 6, 40])
def test_the_legend_sits_beside_the_axes_inside_the_figure(count):
    series = {f"local/rotary ort b{i} with a long name": [(256, i + 1.0), (512, 2 * i + 2.0)] for i in range(count)}
    fig = plots.line_chart(series, title="Scaling: time", xlabel="sequence length", ylabel="ms", logx=True, logy=True)
    fig.canvas.draw()
    axes = fig.axes[0].get_window_extent()
    legend = fig.axes[0].get_legend().get_window_extent()
    assert not legend.overlaps(axes) and legend.x0 >= axes.x1  # to the right, clear of the data
    figure = fig.bbox
    assert figure.x0 <= legend.x0 and legend.x1 <= figure.x1 and figure.y0 <= legend.y0 and legend.y1 <= figure.y1
    assert axes.width > 4 * fig.dpi  # the figure widened for the legend instead of squeezing the axes
