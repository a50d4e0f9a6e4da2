"""Issue 3's benchmark at tiny sizes: structure, positive measurements, ratios from one run.

No timing thresholds: whether a goal is met is data (``goals``), not a test outcome.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from seo_export.bench import export_scaling as es

SEQS, STANDARD_SEQ = [32, 64], 64


@pytest.fixture(scope="module")
def result():
    return es.measure(SEQS, STANDARD_SEQ, rounds=2, num_layers=1, hidden_size=32, num_heads=4, intermediate_size=64,
                      window=8, attn_heads=1, head_dim=8, export_variants=[("sparse", "learned")],
                      matmul_sizes=(32, 64), progress=lambda message: None)


def test_model_scaling_ratios_come_from_one_run(result):
    scaling = result["model_scaling"]
    assert set(scaling["local_s"]) == {str(s) for s in SEQS}
    for seq in SEQS:
        samples = scaling["local_samples_s"][str(seq)]
        assert len(samples) == 2 and all(t > 0 for t in samples)
        assert scaling["local_s"][str(seq)] == pytest.approx(float(np.median(samples)))
    assert len(scaling["standard_samples_s"]) == 2 and scaling["standard_s"] > 0
    assert scaling["growth"]["factor"] == pytest.approx(scaling["local_s"]["64"] / scaling["local_s"]["32"])
    assert scaling["local_vs_standard"]["speedup"] == pytest.approx(scaling["standard_s"] / scaling["local_s"]["64"])
    assert scaling["config"]["attention_window_size"] == 8


def test_attention_flops_against_the_matmul_of_the_same_run(result):
    flops = result["attention_flops"]
    assert [r["seq"] for r in flops["rows"]] == SEQS
    for row in flops["rows"]:
        assert all(t > 0 for t in row["median_s"].values())
        assert row["band_flops"] == 4 * 1 * 8 * es.band_pairs(row["seq"], 4, 4)
        matmuls = {k: v for k, v in row["flop_per_s"].items() if "matmul" in k}
        assert set(matmuls) == {f"{lib}_matmul_{n}" for lib in ("ort", "np") for n in (32, 64)}
        assert row["peak_flop_per_s"] == max(matmuls.values())
        for name, rate in matmuls.items():
            n = int(name.rsplit("_", 1)[1])
            assert rate == pytest.approx(2 * n ** 3 / row["median_s"][name])
        for name in ("local_node", "dense_band"):
            assert row["flop_per_s"][name] == pytest.approx(row["band_flops"] / row["median_s"][name])
            assert row["fraction_of_peak"][name] == pytest.approx(row["flop_per_s"][name] / row["peak_flop_per_s"])
            assert row["fraction_of_peak"][name] > 0


def test_export_time_and_goals(result):
    export = result["export_time"]
    assert export["variants"] == 1 and set(export["per_variant_s"]) == {"sparse/learned"}
    assert all(t > 0 for t in export["per_variant_s"].values())
    assert export["total_s"] >= sum(export["per_variant_s"].values())
    goals = result["goals"]
    assert set(goals) == {"local_growth", "attention_fraction_of_peak", "export_time", "local_faster_than_standard"}
    assert all(isinstance(g["met"], bool) and g["value"] > 0 for g in goals.values())
    assert result["machine"]["threads"]["ort_intra_op"] >= 1


def test_main_writes_json_and_markdown(result, tmp_path, monkeypatch):
    monkeypatch.setattr(es, "measure", lambda *args, **kwargs: result)
    es.main(["--out", str(tmp_path)])
    written = json.loads((tmp_path / "export_scaling.json").read_text())
    assert written["goals"] == json.loads(json.dumps(result["goals"]))
    md = (tmp_path / "export_scaling.md").read_text()
    for heading in ("## Goals", "## 1. Exported model", "## 2. Attention alone", "## 3. Export time"):
        assert heading in md


def test_band_pairs_and_the_two_attention_graphs_agree():
    seq, wl, wr, d = 20, 4, 4, 8
    i = np.arange(seq)
    band = (i[None, :] - i[:, None] >= -wl) & (i[None, :] - i[:, None] <= wr)
    assert es.band_pairs(seq, wl, wr) == int(band.sum())
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, seq, d), dtype=np.float32) for _ in range(3))
    local = es.ort_session(es.local_node_model(wl, wr, d), 1).run(None, {"q": q, "k": k, "v": v})[0]
    dense = es.ort_session(es.dense_band_model(d), 1).run(None, {"q": q, "k": k, "v": v, "band": band})[0]
    np.testing.assert_allclose(local, dense, atol=1e-5)  # the FLOP comparison compares the same computation
