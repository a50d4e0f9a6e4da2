"""The attention-body bench at a tiny size: it measures, agrees with itself and writes its goal."""

from __future__ import annotations

import pytest

from seo_export.bench import attention_body


def test_tiny_measurement_reports_fraction_of_peak_and_the_goal():
    result = attention_body.measure([64], heads=1, head_dim=16, window=8, rounds=2, threads=1, mask=True,
                                    matmul_sizes=(64,))
    row = result["rows"][0]
    assert row["max_abs_vs_body"]["body"] == 0.0
    assert 0 < row["fraction_of_peak"]["body"]["median"] and row["peak_flop_per_s"] > 0
    assert result["goal"]["met"] == (result["goal"]["value"] >= attention_body.GOAL_FRACTION_OF_PEAK)
    text = attention_body.to_markdown(result)
    assert "of the matmul peak at S=64" in text and "| 64 | body |" in text


def test_an_unknown_baseline_revision_is_one_clear_line():
    with pytest.raises(SystemExit, match="cannot read seo_export/export/functions/local_window.py at revision"):
        attention_body.body_at_revision("no-such-revision")
