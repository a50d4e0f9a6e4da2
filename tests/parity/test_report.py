"""Reports: the schema, JSON round trip, markdown/rich tables, and a self-contained HTML page."""

import base64
import io
import json
import re

import numpy as np
import pytest
from matplotlib import image as mpimg
from rich.console import Console

from seo_export.errors import UsageError
from seo_export.parity import report as R
from seo_export.parity.metrics import compare
from seo_export.parity.report import plots
from seo_export.parity.tolerance import check_fp16, check_fp32, combine

ENV = {"python": "3.11", "platform": "linux", "cpu": {"model": "test cpu", "count": 2}, "gpu": None,
       "threads": {"torch": 2}, "packages": {"torch": "2.13.0", "tensorrt": None}}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def validate_case(attention, backend, seq, name, error, rng):
    mask = np.ones((2, seq), dtype=bool)
    mask[1, seq // 2:] = False
    expected = rng.normal(size=(2, seq, 4))
    actual = expected + error
    outputs = {"last_hidden_state": compare(actual, expected, mask),
               "pooler_output": compare(actual[:, 0], expected[:, 0])}
    if backend.endswith("fp32"):
        verdict = check_fp32(actual, expected, mask)
    else:
        verdict = check_fp16(actual, expected, expected + 1e-3, mask)
    broke = None if verdict.passed else R.make_break("layers.3.attention", True, "--keep-fp32 layers.3.attention")
    return R.validate_result(R.make_variant(attention, "rotary"), backend, R.make_input(2, seq, name),
                             outputs, combine({"last_hidden_state": verdict}), backend_s=0.01, eager_s=0.02,
                             break_=broke)


@pytest.fixture
def validate_report():
    rng = np.random.default_rng(0)
    results = [validate_case("local", "ort-fp32", 8, "window", 1e-6, rng),
               validate_case("local", "ort-fp32", 9, "window+1", 2e-6, rng),
               validate_case("local", "ort-fp16", 9, "window+1", 2e-3, rng),
               validate_case("landmark", "ort-fp16", 8, "num_landmarks-1", 0.5, rng)]
    return R.validate_report(results, environment=ENV)


@pytest.fixture
def bench_report():
    results = [R.bench_result(R.make_variant("local", "rotary"), backend, 4, seq, [0.010, 0.011, 0.012],
                              speedup_vs_torch=speedup, speedup_ci95=interval, peak_mb=64.0, threads=2)
               for backend, speedup, interval in (("torch", 1.0, None), ("ort", 1.6, (1.5, 1.7)))
               for seq in (512, 1024)]
    return R.bench_report(results, environment=ENV)


# ----------------------------------------------------------------------------- schema and JSON

def test_built_reports_follow_the_schema(validate_report, bench_report):
    for report in (validate_report, bench_report):
        R.check_report(report)
        assert report["schema_version"] == R.SCHEMA_VERSION == "1"
        assert report["tool"]["name"] == "seo-export"
    assert validate_report["summary"] == {"total": 4, "passed": 3, "failed": 1, "all_passed": False,
                                          "backends": ["ort-fp16", "ort-fp32"], "variants": 2}
    assert validate_report["results"][3]["break"] == {
        "module": "layers.3.attention", "layer": 3, "block": "attention", "fixed_by_fp32": True,
        "flag": "--keep-fp32 layers.3.attention", "note": None}


def test_bench_result_percentiles_and_throughput(bench_report):
    point = bench_report["results"][0]
    assert point["latency_ms"] == {"p50": pytest.approx(11.0), "p90": pytest.approx(11.8),
                                   "p99": pytest.approx(11.98)}
    assert point["throughput_seq_per_s"] == pytest.approx(4 / 0.011)


def test_json_round_trip(tmp_path, validate_report, bench_report):
    for report in (validate_report, bench_report):
        path = tmp_path / f"{report['kind']}.json"
        R.write_json(report, path)
        assert R.load_json(path) == json.loads(json.dumps(report))


def test_json_is_strict_even_with_numpy_and_nan(tmp_path, validate_report):
    validate_report["results"][0]["timings"]["backend_s"] = np.float64("nan")
    validate_report["results"][0]["timings"]["eager_s"] = np.float32(0.5)
    text = R.to_json_text(validate_report)
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert loaded["results"][0]["timings"]["backend_s"] is None
    assert loaded["results"][0]["timings"]["eager_s"] == 0.5


def test_wrong_schema_version_is_refused(tmp_path, validate_report):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**validate_report, "schema_version": "2"}))
    with pytest.raises(R.ReportSchemaError, match="schema_version '2'.*reads schema_version '1'"):
        R.load_json(path)


@pytest.mark.parametrize("damage,fragment", [
    (lambda r: r.pop("environment"), "report.environment: missing"),
    (lambda r: r.update(kind="profile"), "report.kind"),
    (lambda r: r["results"][0]["input"].update(seq="8"), "results[0].input.seq: expected int, got str"),
    (lambda r: r["results"][0]["verdict"].update(passed=1), "results[0].verdict.passed: expected bool"),
    (lambda r: r["results"][1]["outputs"]["last_hidden_state"]["real"]["abs"].pop("p99"), "real.abs.p99: missing"),
])
def test_schema_checker_names_the_problem(validate_report, damage, fragment):
    damage(validate_report)
    with pytest.raises(R.ReportSchemaError, match=re.escape(fragment)):
        R.check_report(validate_report)


def test_speedup_interval_is_optional_but_checked_when_present(bench_report):
    assert bench_report["results"][2]["speedup_vs_torch_ci95"] == [1.5, 1.7]
    assert bench_report["results"][0]["speedup_vs_torch_ci95"] is None
    del bench_report["results"][2]["speedup_vs_torch_ci95"]  # reports written before the field existed
    R.check_report(bench_report)
    bench_report["results"][3]["speedup_vs_torch_ci95"] = [1.5]
    with pytest.raises(R.ReportSchemaError, match=re.escape("results[3].speedup_vs_torch_ci95: expected [low, high]")):
        R.check_report(bench_report)


def test_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{oops")
    with pytest.raises(R.ReportSchemaError, match="not valid JSON"):
        R.load_json(path)


def test_unwritable_location_is_a_usage_error_and_writes_nothing(tmp_path, validate_report):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot write report"):
        R.write_json(validate_report, blocker / "report.json")
    with pytest.raises(UsageError, match="cannot write report to"):
        R.write_report_dir(validate_report, blocker / "sub")
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


def test_invalid_report_is_not_written(tmp_path, validate_report):
    validate_report["schema_version"] = "0"
    with pytest.raises(R.ReportSchemaError):
        R.write_report_dir(validate_report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- tables

def test_markdown_has_the_summary_rows_and_failures(validate_report):
    md = R.render_markdown(validate_report)
    assert "| Variant | Backend | Result | Cases passed | Closest case | Measured | Threshold | Speedup |" in md
    # Measured and Threshold of one case: FP32's smallest passing atol is 0 here (rtol covers 2e-6).
    assert "| local/rotary | ort-fp32 | PASS | 2/2 | window | 0.00e+00 | 1.00e-04 | 2.00x |" in md
    assert "| local/rotary | ort-fp16 | PASS | 1/1 | window+1 | 2.00e-03 | 3.00e-03 |" in md
    assert "| landmark/rotary | ort-fp16 | FAIL | 0/1 | num_landmarks-1 | 5.00e-01 | 3.00e-03 |" in md
    assert "**FAILED**: 3/4 cases passed." in md
    failure = next(line for line in md.splitlines() if line.startswith("- landmark/rotary"))
    assert "num_landmarks-1" in failure and "layers.3.attention (layer 3, attention block)" in failure
    assert "export with --keep-fp32 layers.3.attention" in failure


def test_markdown_bench_table(bench_report):
    md = R.render_markdown(bench_report)
    assert "| local/rotary | ort | 4 | 1024 | 11.00 | 11.80 | 11.98 | 363.6 | 1.60x (1.50-1.70) | 64 | 2 |" in md
    assert "| local/rotary | torch | 4 | 1024 | 11.00 | 11.80 | 11.98 | 363.6 | 1.00x | 64 | 2 |" in md


def test_rich_summary_table(validate_report):
    console = Console(record=True, width=200)
    console.print(R.summary_table(validate_report))
    text = console.export_text()
    assert "landmark/rotary" in text and "FAIL" in text and "2/2" in text


# ----------------------------------------------------------------------------- HTML

def embedded_pngs(page):
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in sources), [s[:40] for s in sources]
    return [base64.b64decode(src[len(prefix):], validate=True) for src in sources]


def assert_self_contained(page):
    for external in ("http://", "https://", 'src="//', "url("):
        assert external not in page
    assert page.count("<img") == len(embedded_pngs(page))
    for png in embedded_pngs(page):
        assert png.startswith(PNG_SIGNATURE)
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50


def test_validate_html_is_self_contained(tmp_path, validate_report):
    maps = {"local": np.tril(np.ones((40, 40))), "landmark": np.random.default_rng(0).random((600, 600))}
    paths = R.write_report_dir(validate_report, tmp_path / "out", attention_maps=maps)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(R.REPORT_FILES)
    page = paths["report.html"].read_text()
    assert_self_contained(page)
    # histogram, error vs seq, latency, speedup, and two heatmaps
    assert len(embedded_pngs(page)) == 6
    assert "Attention pattern: landmark" in page and "layers.3.attention (layer 3, attention block)" in page


def test_bench_html_is_self_contained(bench_report):
    page = R.render_html(bench_report)
    assert_self_contained(page)
    assert len(embedded_pngs(page)) == 4  # latency, speedup, time scaling, memory scaling


def test_html_escapes_text(validate_report):
    validate_report["results"][0]["variant"]["attention"] = "<script>alert(1)</script>"
    validate_report["results"][0]["input"]["name"] = 'a"b&c'
    page = R.render_html(validate_report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'a"b&c' not in page and "a&quot;b&amp;c" in page


def test_heatmap_refuses_non_matrices_and_shrinks_large_maps():
    with pytest.raises(ValueError, match="2-D"):
        plots.heatmap_png(np.zeros((2, 3, 3)), title="bad")
    large = plots.heatmap_png(np.eye(2048), title="large")
    assert large.startswith(PNG_SIGNATURE) and len(large) < 200_000
