"""The landmark kernels against the reference op (CPU interpreter here; CUDA when run with TRITON_INTERPRET=0).

Two compositions of the same stages are checked: the JIT path's four parallel kernels
(``ops.landmark_attention(..., backend="triton")``) and the single kernel TensorRT's AOT path
launches (``landmark_attention_aot_kernel``). Tolerances are those of test_kernels.py: the
FP32 operands of the 16-bit tensor-core products are split into hi + lo, so the kernels
match the FP32 reference to FP32 rounding, amplified by Newton-Schulz, and round the output once.
Sizes are tiny: the interpreter runs every program in Python.
"""

import dataclasses

import pytest
import torch

from tests.plugins.test_kernels import (
    DEVICE,
    DTYPES,
    assert_no_admissible_key_rows_are_zero,
    make_inputs,
    on_device,
    pytestmark,  # noqa: F401  (skips the module where neither the interpreter nor a GPU is available)
    tolerances,
)

from seo_export import ops  # noqa: E402
from seo_export.ops import landmark as reference_module  # noqa: E402
from seo_plugins import launch  # noqa: E402
from seo_plugins.kernels import landmark as kernels  # noqa: E402

LANDMARK_FP32_TOL = 1e-4

# (seq, head_dim, num_landmarks, pinv_iterations, mask, bias K)
CASES = {
    "odd-length-padded-sample": (37, 8, 8, 6, "random", 3),
    "seq-shorter-than-landmarks": (5, 16, 8, 6, None, 2),
    "single-token-zero-bias-table": (1, 8, 4, 6, "prefix", 0),
    "empty-middle-segments-head-dim-24": (40, 24, 5, 6, "hole", 6),
    "no-pinv-iterations": (33, 8, 7, 0, None, None),
    "landmarks-not-power-of-two": (64, 16, 20, 6, "prefix", 8),
}


def run_case(case, dtype, path="jit", heads=1):
    seq, head_dim, landmarks, iterations, mask_kind, bias_k = CASES[case]
    q, k, v, mask, bias = make_inputs(seq, head_dim, dtype, mask_kind, bias_k, heads=heads)
    args = dict(num_landmarks=landmarks, pinv_iterations=iterations, key_padding_mask=mask, rel_bias=bias)
    expected = ops.landmark_attention(q, k, v, **args)
    qd, kd, vd, maskd, biasd = on_device(q, k, v, mask, bias)
    device_args = {**args, "key_padding_mask": maskd, "rel_bias": biasd}
    if path == "jit":
        out = ops.landmark_attention(qd, kd, vd, **device_args, backend="triton")
    else:
        out = kernels.landmark_attention_aot_kernel(qd, kd, vd, **device_args, scale=head_dim ** -0.5)
    assert out.dtype == dtype and out.shape == q.shape
    return out.cpu(), expected, mask


def assert_matches(out, expected, dtype):
    torch.testing.assert_close(out.float(), expected.float(), **tolerances(dtype, LANDMARK_FP32_TOL))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_parallel_kernels_match_reference(case, dtype):
    out, expected, mask = run_case(case, dtype)
    assert_matches(out, expected, dtype)
    assert_no_admissible_key_rows_are_zero(out, mask)


# Every edge case in FP32; the 16-bit tensor-core paths on the two cases with empty segments and bias.
AOT_CASES = [(case, torch.float32) for case in CASES] + [
    ("empty-middle-segments-head-dim-24", torch.float16), ("odd-length-padded-sample", torch.bfloat16)]


@pytest.mark.parametrize("case,dtype", AOT_CASES, ids=str)
def test_single_aot_kernel_matches_reference(case, dtype):
    out, expected, mask = run_case(case, dtype, path="aot")
    assert_matches(out, expected, dtype)
    assert_no_admissible_key_rows_are_zero(out, mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_key_splits_and_landmark_groups_merge_exactly(dtype, monkeypatch):
    """16-key splits (one wholly padded: its partial softmax is empty) and one landmark per means
    program, as long sequences on a GPU get them; the merged result is the reference's."""
    original = kernels.landmark_stages_launch
    monkeypatch.setattr(launch, "KEY_SPLIT_MIN_BLOCKS", 1)
    monkeypatch.setattr(launch, "MEANS_TOKENS", 1)
    monkeypatch.setattr(kernels, "landmark_stages_launch",
                        lambda *args: dataclasses.replace(original(*args), block_n=16))
    tiles = kernels.landmark_stages_launch(8, 6, 2)
    assert tiles.key_splits(3, 1, 100) == (7, 16) and tiles.means_tiles(100)[0] == 1
    q, k, v, mask, bias = make_inputs(100, 8, dtype, "hole", 4, heads=1)  # keys 25..49 padded
    args = dict(num_landmarks=6, pinv_iterations=6, key_padding_mask=mask, rel_bias=bias)
    expected = ops.landmark_attention(q, k, v, **args)
    qd, kd, vd, maskd, biasd = on_device(q, k, v, mask, bias)
    out = ops.landmark_attention(qd, kd, vd, **{**args, "key_padding_mask": maskd, "rel_bias": biasd},
                                 backend="triton").cpu()
    assert_matches(out, expected, dtype)
    assert_no_admissible_key_rows_are_zero(out, mask)


def _batch_wide_pinv(a, iterations):
    """A wrong pinv: one initial scaling for the whole batch instead of per (batch, head)."""
    eye = torch.eye(a.shape[-1])
    norm = a.abs().sum(-2).amax() * a.abs().sum(-1).amax()
    z = a.transpose(-1, -2) / norm
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


@pytest.mark.parametrize("fault", ["batch-wide-pinv-scaling", "centres-rounded-up", "masks-ignored"])
def test_comparison_catches_a_wrong_reference(fault, monkeypatch):
    """The kernels' output must not pass against a reference with a known fault: the tolerances
    are tight enough to see each semantic rule the kernels keep."""
    q, k, v, mask, bias = make_inputs(40, 8, torch.float32, "hole", 6, heads=1)
    q[2] *= 10  # a very different batch neighbour, so batch-wide pinv scaling shows
    args = dict(num_landmarks=5, pinv_iterations=6, key_padding_mask=mask, rel_bias=bias)
    qd, kd, vd, maskd, biasd = on_device(q, k, v, mask, bias)
    out = ops.landmark_attention(qd, kd, vd, **{**args, "key_padding_mask": maskd, "rel_bias": biasd},
                                 backend="triton").cpu()
    assert_matches(out, ops.landmark_attention(q, k, v, **args), torch.float32)
    if fault == "batch-wide-pinv-scaling":
        monkeypatch.setattr(reference_module, "newton_schulz_pinv", _batch_wide_pinv)
    elif fault == "centres-rounded-up":
        original = reference_module.segment_layout
        monkeypatch.setattr(reference_module, "segment_layout",
                            lambda *a, **kw: (original(*a, **kw)[0], original(*a, **kw)[1] + 1))
    else:  # padded keys and empty segments (the hole empties segment 2) take part
        original = reference_module.masked_softmax
        monkeypatch.setattr(reference_module, "masked_softmax", lambda s, allowed: original(s, torch.ones_like(allowed)))
    with pytest.raises(AssertionError):
        assert_matches(out, ops.landmark_attention(q, k, v, **args), torch.float32)


def test_aot_kernel_refuses_what_cannot_fit_48_kib():
    with pytest.raises(ValueError, match="aot=0"):
        kernels.landmark_constants(64, 2, launch.AOT_MAX_BLOCK_L + 1, 6, 0, 0.125, True, True)
    assert DEVICE is not None
