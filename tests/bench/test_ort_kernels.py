import numpy as np
import pytest
import torch

from seo_export.bench import ort_kernels


@pytest.mark.parametrize("k, n", [(8, 16), (16, 8)])
def test_linear_contenders_compute_the_same_linear(monkeypatch, k, n):
    # Small shapes keep the test fast; the contenders are timed only if they agree.
    monkeypatch.setattr(ort_kernels, "BATCH", 2)
    monkeypatch.setattr(ort_kernels, "SEQ", 3)
    contenders = ort_kernels.linear_contenders(k, n, np.random.default_rng(0))
    with torch.inference_mode():
        results = {name: call() for name, call in contenders.items()}
    # ORT returns a list of outputs, torch a tensor.
    outputs = {name: np.asarray(r[0] if isinstance(r, list) else r) for name, r in results.items()}
    assert outputs["ort"].shape == (2, 3, n)
    np.testing.assert_allclose(outputs["ort"], outputs["torch"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["ort_no_bias"], outputs["torch_no_bias"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs["ort"], outputs["ort_no_bias"])  # the bias is really there


def test_attention_contenders_compute_the_same_attention():
    # The two ops with the default model's window and landmarks, on a short input with a padded row.
    contenders = ort_kernels.attention_contenders(np.random.default_rng(0), batch=2, seq=80, heads=2, head_dim=8)
    assert len(contenders) == 2
    for op, calls in contenders.items():
        with torch.inference_mode():
            eager = calls["torch"]().numpy()
        ort_out = calls["ort"]()[0]
        assert eager.shape == ort_out.shape == (2, 2, 80, 8), op
        np.testing.assert_allclose(ort_out, eager, rtol=1e-4, atol=1e-5, err_msg=op)


def test_markdown_reports_both_linear_ratios():
    result = {"machine": {"cpu": "x86_64", "threads": 2, "torch": "2", "onnxruntime": "1"}, "rounds": 3, "settle_ms": 20.0,
              "linears": [{"shape": [4, 512, 768, 768],
                           "median_ms": {"torch": 10.0, "ort": 12.5, "torch_no_bias": 9.0, "ort_no_bias": 10.0},
                           "ort_speed_vs_torch": 0.8, "no_bias_ort_speed_vs_torch": 0.9}],
              "attention": {"seo::LocalWindowAttention (window 128)": {"median_ms": {"torch": 40.0, "ort": 25.0},
                                                                       "ort_speed_vs_torch": 1.6}},
              "fusions_ms": {"gelu": {"fused": 1.0}}}
    text = ort_kernels.to_markdown(result)
    assert "`python -m seo_export.bench.ort_kernels --rounds 3 --settle-ms 20`" in text
    assert "| [4, 512, 768] x [768, 768] | 10.0 | 12.5 | 0.80x | 9.0 | 10.0 | 0.90x |" in text
    assert "| gelu: fused | 1.00 |" in text
    assert "| seo::LocalWindowAttention (window 128) | 40.0 | 25.0 | 1.60x |" in text
