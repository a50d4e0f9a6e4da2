"""metrics.compare against numbers worked out by hand."""

import json
import math

import numpy as np
import pytest

from seo_export.parity.metrics import HIST_EDGES, TINY, compare, cosine_similarity, log_histogram, region_masks

# One sequence of 4 tokens, hidden size 1; the last token is padding.
ACTUAL = np.array([[[1.5], [2.0], [3.0], [7.0]]])
EXPECTED = np.array([[[1.0], [2.0], [4.0], [0.0]]])
MASK = np.array([[True, True, True, False]])


def assert_plain_json(value):
    """Only Python JSON types all the way down (no numpy scalars, no NaN)."""
    if isinstance(value, dict):
        for v in value.values():
            assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain_json(v)
    else:
        assert value is None or type(value) in (bool, int, float, str), type(value)
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_real_positions_by_hand():
    real = compare(ACTUAL, EXPECTED, MASK, rtol=0.1)["real"]
    # |a - e| on real tokens: [0.5, 0, 1]
    assert real["count"] == 3
    assert real["abs"]["max"] == 1.0
    assert real["abs"]["mean"] == pytest.approx(0.5)
    assert real["abs"]["median"] == 0.5
    assert real["abs"]["p99"] == pytest.approx(0.5 + 0.98 * 0.5)  # linear: position 0.99 * 2 = 1.98
    # |a - e| / |e|: [0.5, 0, 0.25]
    assert real["rel"]["max"] == pytest.approx(0.5)
    assert real["rel"]["mean"] == pytest.approx(0.25)
    assert real["rel"]["median"] == pytest.approx(0.25)
    assert real["rel"]["p99"] == pytest.approx(0.25 + 0.98 * 0.25)
    # [1.5, 2, 3] . [1, 2, 4] = 17.5
    assert real["cosine"] == pytest.approx(17.5 / math.sqrt(15.25 * 21))
    # At rtol 0 the max error; at rtol 0.1: max(0.5 - 0.1, 0 - 0.2, 1 - 0.4) = 0.6
    assert real["passing_tolerance"] == {"atol_at_rtol_0": 1.0, "rtol": 0.1, "atol": pytest.approx(0.6)}
    assert real["nan"] == real["inf"] == real["reference_nonfinite"] == 0


def test_padded_positions_by_hand():
    padded = compare(ACTUAL, EXPECTED, MASK)["padded"]
    assert padded["count"] == 1
    assert padded["abs"] == {"max": 7.0, "mean": 7.0, "median": 7.0, "p99": 7.0}
    assert padded["rel"]["max"] == pytest.approx(7.0 / TINY)  # expected 0: large, still finite
    assert padded["cosine"] == 0.0  # expected is all zero, actual is not


def test_output_is_plain_json():
    result = compare(ACTUAL.astype(np.float32), EXPECTED.astype(np.float32), MASK)
    assert_plain_json(result)
    assert result["shape"] == [1, 4, 1] and result["dtype"] == "float32"
    json.dumps(result, allow_nan=False)


def test_no_padding_gives_empty_padded_region():
    padded = compare(ACTUAL, EXPECTED, np.ones((1, 4), dtype=bool))["padded"]
    assert padded["count"] == 0
    assert padded["abs"]["max"] is None and padded["cosine"] is None
    assert_plain_json(padded)


def test_int_attention_mask_is_accepted():
    as_bool = compare(ACTUAL, EXPECTED, MASK)
    as_int = compare(ACTUAL, EXPECTED, MASK.astype(np.int64))
    assert as_bool == as_int


def test_output_without_seq_axis_is_all_real():
    # pooler_output [batch=1, hidden=3] with a [1, 4] mask: no seq axis, everything is real.
    metrics = compare(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 2.0]]), MASK)
    assert metrics["real"]["count"] == 3 and metrics["padded"]["count"] == 0
    assert metrics["real"]["abs"]["max"] == 1.0


def test_ambiguous_shape_can_be_told_apart():
    # hidden == seq: the shape alone looks like [batch, seq]; has_seq_axis=False says otherwise.
    a, e = np.ones((1, 4)), np.zeros((1, 4))
    assert compare(a, e, MASK)["padded"]["count"] == 1
    assert compare(a, e, MASK, has_seq_axis=False)["padded"]["count"] == 0


def test_mask_broadcasts_over_trailing_axes():
    masks = region_masks((2, 3, 4, 5), np.array([[1, 1, 0], [1, 0, 0]]))
    assert masks["real"].sum() == 3 * 20 and masks["padded"].sum() == 3 * 20
    assert masks["real"][0, 1].all() and not masks["real"][1, 1].any()


def test_nan_and_inf_are_counted_not_averaged():
    actual = np.array([[np.nan, np.inf, -np.inf, 1.0]])
    expected = np.array([[0.0, 0.0, 0.0, 1.25]])
    real = compare(actual, expected)["real"]
    assert (real["nan"], real["inf"], real["count"]) == (1, 2, 4)
    assert real["abs"]["max"] == 0.25  # over the one finite pair
    nonfinite_reference = compare(expected, actual)["real"]
    assert nonfinite_reference["reference_nonfinite"] == 3 and nonfinite_reference["nan"] == 0


def test_all_nonfinite_gives_null_statistics():
    real = compare(np.array([[np.nan, np.nan]]), np.zeros((1, 2)))["real"]
    assert real["abs"]["max"] is None and real["cosine"] is None and real["passing_tolerance"]["atol"] is None
    json.dumps(real, allow_nan=False)


def test_fp16_output_is_measured_exactly():
    actual = np.array([[1.0 + 2.0 ** -10]], dtype=np.float16)
    metrics = compare(actual, np.array([[1.0]], dtype=np.float32))
    assert metrics["real"]["abs"]["max"] == 2.0 ** -10
    assert metrics["dtype"] == "float16"


@pytest.mark.parametrize("a,e,cos", [
    ([1.0, 0.0], [0.0, 2.0], 0.0),
    ([1.0, 2.0], [-2.0, -4.0], -1.0),
    ([3.0, 4.0], [6.0, 8.0], 1.0),
    ([0.0, 0.0], [0.0, 0.0], 1.0),
])
def test_cosine(a, e, cos):
    assert cosine_similarity(np.array(a), np.array(e)) == pytest.approx(cos)


def test_log_histogram_bins():
    counts = log_histogram(np.array([0.0, 1e-9, 5e-5, 0.5, 1.0, 10.0, 1e6]))
    assert len(counts) == len(HIST_EDGES) + 1 and sum(counts) == 7
    assert counts[0] == 1  # exact zero: below 1e-9
    assert counts[1] == 1  # [1e-9, 1e-8)
    assert counts[5] == 1  # [1e-5, 1e-4)
    assert counts[9] == 1  # [0.1, 1)
    assert counts[10] == 1  # [1, 10)
    assert counts[11] == 2  # >= 10


def test_histogram_is_reported_per_region():
    real = compare(ACTUAL, EXPECTED, MASK)["real"]
    assert real["abs_histogram"][0] == 1 and real["abs_histogram"][9] == 1 and real["abs_histogram"][10] == 1


@pytest.mark.parametrize("actual,expected,mask,fragment", [
    (np.zeros((1, 4, 2)), np.zeros((1, 4, 3)), None, "does not match the reference shape"),
    (np.zeros((1, 4, 2)), np.zeros((1, 4, 2)), np.ones(4, bool), "must be [batch, seq]"),
])
def test_bad_shapes_are_refused(actual, expected, mask, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        compare(actual, expected, mask)


def test_mask_that_does_not_fit_a_seq_axis_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        compare(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), MASK, has_seq_axis=True)
