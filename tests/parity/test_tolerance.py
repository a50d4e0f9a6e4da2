"""The FP32 atol/rtol rule and the FP16 '2x eager FP16 error + floor' rule."""

import json

import numpy as np
import pytest

from seo_export.parity.tolerance import (
    FP16_RULE,
    FP32_RULE,
    Verdict,
    check_fp16,
    check_fp32,
    combine,
    fp16_rule,
)

EXPECTED = np.array([[[1.0], [100.0]]])  # [batch 1, seq 2, hidden 1]


def test_fp32_passes_within_atol_plus_rtol():
    # bounds: 1e-4 + 1e-4 * 1 = 2e-4 and 1e-4 + 1e-4 * 100 = 1.01e-2
    actual = EXPECTED + np.array([[[1.5e-4], [9.5e-3]]])
    verdict = check_fp32(actual, EXPECTED)
    assert verdict.passed and verdict.rule == FP32_RULE
    assert verdict.threshold == 1e-4
    assert verdict.measured == pytest.approx(5e-5)  # max(1.5e-4 - 1e-4, 9.5e-3 - 1e-2)


def test_fp32_fails_past_the_bound_and_overrides_apply():
    actual = EXPECTED + np.array([[[0.0], [1.05e-2]]])
    verdict = check_fp32(actual, EXPECTED)
    assert not verdict.passed
    assert verdict.measured == pytest.approx(5e-4)
    assert "exceeds" in verdict.reason and "smallest passing atol at this rtol: 0.0005" in verdict.reason
    assert check_fp32(actual, EXPECTED, atol=1e-3).passed
    assert check_fp32(actual, EXPECTED, rtol=2e-4).passed


def test_fp32_with_rtol_zero_is_plain_atol():
    actual = EXPECTED + 2e-4
    assert not check_fp32(actual, EXPECTED, rtol=0.0).passed
    assert check_fp32(actual, EXPECTED, atol=2.5e-4, rtol=0.0).passed


def test_padded_positions_are_not_judged():
    actual = EXPECTED + np.array([[[0.0], [5.0]]])
    mask = np.array([[True, False]])
    assert check_fp32(actual, EXPECTED, mask).passed
    assert not check_fp32(actual, EXPECTED).passed


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_output_always_fails_even_in_padding(bad):
    actual = EXPECTED.copy()
    actual[0, 1, 0] = bad
    mask = np.array([[True, False]])
    for verdict in (check_fp32(actual, EXPECTED, mask, atol=1e9),
                    check_fp16(actual, EXPECTED, EXPECTED, mask, floor=1e9)):
        assert not verdict.passed
        assert "NaN/Inf" in verdict.reason
        json.dumps(verdict.to_dict(), allow_nan=False)


def test_nonfinite_reference_fails_with_its_own_reason():
    expected = EXPECTED.copy()
    expected[0, 0, 0] = np.nan
    verdict = check_fp32(EXPECTED, expected)
    assert not verdict.passed and "reference" in verdict.reason


def test_fp16_rule_arithmetic():
    # threshold = 2 * 0.002 + 0.001 = 0.005
    at_bar = fp16_rule(0.005, 0.002)
    assert at_bar.passed and at_bar.threshold == pytest.approx(0.005) and at_bar.rule == FP16_RULE
    assert (at_bar.measured, at_bar.baseline) == (0.005, 0.002)
    assert not fp16_rule(0.0051, 0.002).passed
    assert fp16_rule(0.0, 0.0).threshold == 1e-3  # an exact baseline still leaves the floor
    overridden = fp16_rule(0.0055, 0.002, factor=3.0, floor=0.0)
    assert overridden.passed and overridden.threshold == pytest.approx(0.006)
    assert "0.0051 > 2 x eager-fp16 err 0.002 + 0.001 = 0.005" in fp16_rule(0.0051, 0.002).reason


def test_fp16_rule_with_undefined_baseline_fails():
    verdict = fp16_rule(0.0, float("nan"))
    assert not verdict.passed and "baseline" in verdict.reason


def test_check_fp16_on_arrays():
    expected = np.zeros((1, 3, 2))
    baseline = expected.copy()
    baseline[0, 0, 1] = 0.001  # eager fp16 error 1e-3 -> bar 2 * 1e-3 + 1e-3 = 3e-3
    baseline[0, 2, 0] = 1.0  # in padding: not part of the baseline
    mask = np.array([[1, 1, 0]])
    passing = expected.copy()
    passing[0, 1, 0] = 0.0029
    failing = expected.copy()
    failing[0, 1, 0] = 0.0031
    verdict = check_fp16(passing, expected, baseline, mask)
    assert verdict.passed and verdict.threshold == pytest.approx(3e-3) and verdict.baseline == pytest.approx(1e-3)
    assert not check_fp16(failing, expected, baseline, mask).passed


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="different shapes"):
        check_fp16(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 3)))


def test_combine_reports_the_worst_output():
    ok_close = fp16_rule(0.0049, 0.002)
    ok_far = fp16_rule(0.001, 0.002)
    bad = fp16_rule(0.01, 0.002)
    combined = combine({"last_hidden_state": ok_far, "pooler_output": bad})
    assert not combined.passed and combined.reason.startswith("pooler_output: ")
    all_ok = combine({"a": ok_far, "b": ok_close})
    assert all_ok.passed and all_ok.reason.startswith("b: ") and all_ok.measured == 0.0049


def test_verdict_dict_round_trip():
    verdict = check_fp32(EXPECTED, EXPECTED)
    data = verdict.to_dict()
    assert set(data) == {"passed", "rule", "threshold", "measured", "baseline", "reason"}
    assert Verdict.from_dict(json.loads(json.dumps(data))) == verdict
