"""The Triton kernels against the reference ops (CPU interpreter here; CUDA when run with TRITON_INTERPRET=0).

Tolerances come from where the kernels round differently from the reference, which
computes in FP32 from the same inputs and rounds its output once:
- FP32: only reordered FP32 sums (online softmax, blocked reductions) differ.
  Local window: 1e-5 (measured ~1e-6). Landmark: 1e-4, the bound the FP32 reference
  itself meets against float64 (tests/ops/test_landmark.py): Newton-Schulz amplifies
  FP32 rounding, so two FP32 orderings may differ by up to that (measured ~3e-6).
- FP16 / BF16 (unit roundoff u = 2^-11 / 2^-8): both round the output once, and two
  FP32 values within the FP32 tolerance can round to neighbouring values, one ulp apart:
  rtol = 2u. The local kernel also rounds P to the value dtype for the P @ V product
  (as flash attention does): |sum_j dp_j v_j| <= u * max|v| more in atol. The landmark
  kernels (tests/plugins/test_landmark_kernel.py) split FP32 operands into hi + lo, so they
  have no such term.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from seo_export import ops  # noqa: E402
from seo_plugins.kernels import is_interpreted  # noqa: E402
from seo_plugins.kernels.local_window import local_window_fwd  # noqa: E402

if is_interpreted(local_window_fwd):
    DEVICE = "cpu"
elif torch.cuda.is_available():
    DEVICE = "cuda"
else:
    DEVICE = None
pytestmark = pytest.mark.skipif(
    DEVICE is None, reason="Triton was imported before TRITON_INTERPRET=1 was set and no CUDA GPU is visible"
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
LOCAL_FP32_TOL = 1e-5
LANDMARK_FP32_TOL = 1e-4


def tolerances(dtype, fp32_tol, rounded_operand_max=0.0):
    if dtype == torch.float32:
        return dict(atol=fp32_tol, rtol=fp32_tol)
    u = UNIT_ROUNDOFF[dtype]
    return dict(atol=fp32_tol + u * rounded_operand_max, rtol=2 * u)


def make_mask(kind, batch, seq):
    """None, or [batch, seq] bool; sample 1 is fully padded in every kind."""
    if kind is None:
        return None
    gen = torch.Generator().manual_seed(seq)
    mask = torch.rand(batch, seq, generator=gen) > 0.3
    if kind == "prefix":
        mask = torch.arange(seq)[None, :] < torch.tensor([seq, 0, max(seq // 2, 1)])[:batch, None]
    if kind == "hole":  # a run of padding in the middle: some landmark segments are empty
        mask = torch.ones(batch, seq, dtype=torch.bool)
        mask[:, seq // 4: seq // 2] = False
    mask[1] = False
    return mask


def make_inputs(seq, head_dim, dtype, mask_kind, bias_k, heads=2, batch=3):
    q, k, v = (torch.randn(batch, heads, seq, head_dim).to(dtype) for _ in range(3))
    bias = None if bias_k is None else torch.randn(heads, 2 * bias_k + 1).to(dtype)
    return q, k, v, make_mask(mask_kind, batch, seq), bias


def on_device(*tensors):
    return [None if t is None else t.to(DEVICE) for t in tensors]


def assert_no_admissible_key_rows_are_zero(out, mask):
    assert torch.isfinite(out.float()).all()
    if mask is not None:
        assert (out[1] == 0).all(), "a fully padded sample has no admissible key: zeros, not NaN"


# (seq, head_dim, window_left, window_right, mask, bias K, scale); K = 0 is the exporter's [H, 1] zero table
LOCAL_CASES = {
    "odd-length-bias-clipped": (37, 8, 3, 3, "random", 2, None),
    "causal-head-dim-24": (37, 24, 5, 0, "random", None, None),
    "single-token": (1, 16, 4, 0, "prefix", 3, None),
    "seq-shorter-than-window": (20, 16, 50, 50, "prefix", 8, 0.3),
    "window-zero-zero-bias-table": (45, 8, 0, 0, "random", 0, None),
    "asymmetric-no-mask": (33, 8, 2, 6, None, 16, None),
    "band-spans-key-blocks": (100, 8, 20, 3, "prefix", 5, None),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", LOCAL_CASES, ids=str)
def test_local_window_matches_reference(case, dtype):
    seq, head_dim, left, right, mask_kind, bias_k, scale = LOCAL_CASES[case]
    q, k, v, mask, bias = make_inputs(seq, head_dim, dtype, mask_kind, bias_k)
    args = dict(window_left=left, window_right=right, key_padding_mask=mask, rel_bias=bias, scale=scale)
    expected = ops.local_window_attention(q, k, v, **args)
    qd, kd, vd, maskd, biasd = on_device(q, k, v, mask, bias)
    out = ops.local_window_attention(qd, kd, vd, **{**args, "key_padding_mask": maskd, "rel_bias": biasd},
                                     backend="triton")
    assert out.dtype == dtype and out.shape == q.shape
    out = out.cpu()
    torch.testing.assert_close(out.float(), expected.float(),
                               **tolerances(dtype, LOCAL_FP32_TOL, v.float().abs().max().item()))
    assert_no_admissible_key_rows_are_zero(out, mask)


def test_local_window_row_without_admissible_key_is_zero():
    """Window 0 with padding: a padded query sees only its own (padded) key."""
    q, k, v, mask, _ = make_inputs(21, 8, torch.float16, "random", None)
    out = ops.local_window_attention(*on_device(q, k, v), window_left=0, window_right=0,
                                     key_padding_mask=mask.to(DEVICE), backend="triton").cpu()
    assert (out.permute(0, 2, 1, 3)[~mask] == 0).all()
    assert (out.permute(0, 2, 1, 3)[mask] != 0).any()


def test_local_window_visits_only_key_blocks_touching_the_band():
    """NaN values beyond key 63 reach a query block only if the kernel loads their key block.

    Window (2, 2) gives 16-row tiles; queries 0..47 touch key blocks up to 48..63 only,
    while a dense kernel would load every key and turn every row NaN.
    """
    q, k, v, _, _ = make_inputs(128, 8, torch.float32, None, None, batch=1)
    expected = ops.local_window_attention(q, k, v, window_left=2, window_right=2)
    v[:, :, 64:] = float("nan")
    out = ops.local_window_attention(*on_device(q, k, v), window_left=2, window_right=2, backend="triton").cpu()
    torch.testing.assert_close(out[:, :, :48], expected[:, :, :48], atol=LOCAL_FP32_TOL, rtol=LOCAL_FP32_TOL)


def test_non_contiguous_inputs():
    q, k, v, mask, bias = make_inputs(19, 8, torch.float32, "random", 4)
    qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    assert not qt.is_contiguous()
    args = dict(window_left=3, window_right=1, key_padding_mask=mask, rel_bias=bias)
    expected = ops.local_window_attention(q, k, v, **args)
    qd, kd, vd, maskd, biasd = on_device(qt, kt, vt, mask, bias)
    out = ops.local_window_attention(qd, kd, vd, window_left=3, window_right=1, key_padding_mask=maskd,
                                     rel_bias=biasd, backend="triton")
    torch.testing.assert_close(out.cpu(), expected, atol=LOCAL_FP32_TOL, rtol=LOCAL_FP32_TOL)


def test_rejects_mixed_dtypes():
    q, k, v, _, _ = make_inputs(8, 8, torch.float32, None, None)
    with pytest.raises((TypeError, ValueError)):
        ops.local_window_attention(*on_device(q, k.half(), v), window_left=1, window_right=1, backend="triton")
