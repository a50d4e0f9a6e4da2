"""The attention-body bench at a tiny size: it measures, agrees with itself and writes its goal."""

from __future__ import annotations

import pytest

from seo_export.bench import attention_body, body_ceiling


@pytest.mark.parametrize("regime, words", [("warm", "back-to-back calls"), ("cold", "one cold call")])
def test_tiny_measurement_reports_fraction_of_peak_and_the_goal(regime, words):
    result = attention_body.measure([64], heads=1, head_dim=16, window=8, rounds=2, threads=1, mask=True,
                                    matmul_sizes=(64,), regime=regime)
    row = result["rows"][0]
    assert row["max_abs_vs_body"]["body"] == 0.0
    assert 0 < row["fraction_of_peak"]["body"]["median"] and row["peak_flop_per_s"] > 0
    assert result["goal"]["met"] == (result["goal"]["value"] >= attention_body.GOAL_FRACTION_OF_PEAK)
    text = attention_body.to_markdown(result)
    assert "of the matmul peak at S=64" in text and "| 64 | body |" in text and words in text
    assert result["regime"] == regime and result["timing"] == attention_body.REGIMES[regime]


def test_an_unknown_baseline_revision_is_one_clear_line():
    with pytest.raises(SystemExit, match="cannot read seo_export/export/functions/local_window.py at revision"):
        attention_body.body_at_revision("no-such-revision")


def test_with_body_swaps_every_local_window_function_and_the_model_feels_it(tmp_path_factory):
    """The model comparison runs the exported file with another revision's body: the swap must reach every
    local-window function (the current body swapped in changes nothing; a faulty one, whose floor raises
    every entry to the row max, changes the output)."""
    import numpy as np
    import onnx

    from seo_export.backends.ort_runner import create_session
    from seo_export.export.functions import local_window
    from tests.export.helpers import exported, padded_inputs, set_body_constant

    _, result = exported(tmp_path_factory, ("local", "sinusoidal", False))
    model = onnx.load(str(result.path))

    def flat_floor(overload, opset):
        proto = local_window.build(overload, opset)
        assert set_body_constant([proto], "c_floor", 0.0) == 1
        return proto

    feeds = padded_inputs(2, 41)
    run = lambda m: create_session(m, ["CPUExecutionProvider"], 1).run(None, feeds)[0]  # noqa: E731
    same, faulty = attention_body.with_body(model, local_window.build), attention_body.with_body(model, flat_floor)
    local = [f for f in faulty.functions if f.name.startswith("LocalWindowAttention")]
    floors = [onnx.numpy_helper.to_array(n.attribute[0].t) for f in local for n in f.node if n.output[0] == "c_floor"]
    assert len(floors) == len(local) >= 1 and all(value == 0 for value in floors)
    np.testing.assert_array_equal(run(same), run(model))
    assert np.abs(run(faulty) - run(model)).max() > 1e-2


def test_ceilings_time_bodies_that_leave_work_out_and_say_how_wrong_they_are():
    result = attention_body.measure([128], heads=1, head_dim=16, window=128, rounds=2, threads=1,
                                    matmul_sizes=(64,), ceiling=True)
    row = result["rows"][0]
    for name in body_ceiling.CEILINGS:
        # Every ceiling leaves out the key-range pass, so it is wrong near the ends: visibly so in the report.
        assert row["max_abs_vs_body"][name] > 1e-3
        assert row["ceiling_speedup_vs_body"][name]["median"] > 0
    text = attention_body.to_markdown(result)
    assert "Ceilings (`--ceiling`" in text and "| 128 | ceiling: no key-range pass, no trim, block gathers |" in text


def test_only_the_key_range_pass_makes_a_ceiling_wrong_where_its_shape_holds():
    """The trim and the row gathers are left out exactly at S a multiple of 64 with window 64 / 64:
    there the body without them is the body, so a ceiling's gain from them is a real rewrite's."""
    import numpy as np

    from seo_export.bench.export_scaling import ort_session

    edits = body_ceiling.CEILINGS["ceiling: no key-range pass, no trim, block gathers"][1:]
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((1, 2, 192, 16), dtype=np.float32) for name in "qkv"}
    body = ort_session(attention_body.node_model(16, 64, 64, False), 1).run(None, feeds)[0]
    exact = ort_session(attention_body.node_model(16, 64, 64, False, body_ceiling.variant_build(edits)), 1)
    np.testing.assert_array_equal(exact.run(None, feeds)[0], body)


def test_a_ceiling_refuses_a_body_that_no_longer_holds_its_text_and_a_shape_it_does_not_fit():
    with pytest.raises(ValueError, match="no longer holds the text"):
        body_ceiling.variant_build((("_SOFTMAX", "    no such line\n", ""),))
    for seqs, window, mask in (([100], 128, False), ([128], 64, False), ([128], 128, True)):
        with pytest.raises(SystemExit, match="--ceiling times block gathers valid only"):
            body_ceiling.check_shape(seqs, window, mask)
