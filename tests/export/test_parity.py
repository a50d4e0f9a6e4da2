"""Every variant: ONNX Runtime on the exported file against eager PyTorch."""

import numpy as np
import onnxruntime as ort
import pytest

from tests.export.helpers import LENGTHS, VARIANTS, eager, exported, padded_inputs, variant_id


def run_ort(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, (np.asarray(o, dtype=np.float32) for o in session.run(names, feeds))))


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_fp32_file_matches_eager(tmp_path_factory, variant):
    model, result = exported(tmp_path_factory, variant, "fp32")
    for seq in LENGTHS:
        feeds = padded_inputs(3, seq)
        got, want = run_ort(result.path, feeds), eager(model, feeds)
        for name in want:
            assert np.isfinite(got[name]).all(), f"{name} has NaN/Inf at seq {seq}"
            err = np.abs(got[name] - want[name]).max()
            assert err <= 1e-4, f"{name} at seq {seq}: max abs err {err:.2e} > 1e-4"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_fp16_file_within_twice_eager_fp16_error(tmp_path_factory, variant):
    """FlashAttention's rule: err(fp16 file vs fp32 eager) <= 2 * err(fp16 eager vs fp32 eager) + 1e-3."""
    import torch

    model, result = exported(tmp_path_factory, variant, "fp16")
    for seq in LENGTHS:
        feeds = padded_inputs(3, seq)
        got, want, half = run_ort(result.path, feeds), eager(model, feeds), eager(model, feeds, torch.float16)
        for name in want:
            assert np.isfinite(got[name]).all(), f"{name} has NaN/Inf at seq {seq}"
            err = np.abs(got[name] - want[name]).max()
            bound = 2 * np.abs(half[name] - want[name]).max() + 1e-3
            assert err <= bound, f"{name} at seq {seq}: fp16 err {err:.2e} > bound {bound:.2e}"
