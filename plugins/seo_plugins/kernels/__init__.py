"""Triton kernels for the seo ops, and the device and host helpers both kernels share.

Kernel modules: ``local_window`` (banded flash attention) and ``landmark`` (Nystrom,
one program per (batch, head)). Every kernel takes only pointers and shape ints at
run time, in TensorRT's AOT order (inputs, scalars, outputs); attributes such as
windows, landmark counts and the scale are compile-time constants.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

# ----------------------------------------------------------------------------- device helpers


@triton.jit
def dot(a, b, UPCAST: tl.constexpr):
    """a @ b with FP32 accumulation. FP32 operands use exact products (IEEE, not TF32) so
    FP32 results match the reference; UPCAST computes in FP32 where tl.dot on 16-bit
    operands is wrong (the interpreter, for BF16)."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision="ieee", out_dtype=tl.float32)


@triton.jit
def load_tile(ptr, rows, cols, num_rows, NUM_COLS: tl.constexpr):
    """Rows ``rows`` of a row-major [num_rows, NUM_COLS] matrix; padding rows/columns read 0."""
    ok = (rows[:, None] < num_rows) & (cols[None, :] < NUM_COLS)
    return tl.load(ptr + rows[:, None] * NUM_COLS + cols[None, :], mask=ok, other=0.0)


@triton.jit
def token_mask(Mask, batch, seq_len, offs, HAS_MASK: tl.constexpr):
    """True for real tokens at positions ``offs`` of sample ``batch`` (in range and not padding)."""
    ok = offs < seq_len
    if HAS_MASK:
        ok = ok & (tl.load(Mask + batch * seq_len + offs, mask=ok, other=0) != 0)
    return ok


@triton.jit
def relative_bias(Bias, head, rel, MAX_DISTANCE: tl.constexpr):
    """FP32 b[head, clip(rel, -K, K) + K] from a [H, 2K+1] table (every index is in range)."""
    bucket = tl.minimum(tl.maximum(rel, -MAX_DISTANCE), MAX_DISTANCE) + MAX_DISTANCE
    return tl.load(Bias + head * (2 * MAX_DISTANCE + 1) + bucket).to(tl.float32)


@triton.jit
def online_softmax_step(s, allowed, m_i):
    """One block of a streaming row softmax over ``allowed`` entries.

    Returns (p, alpha, m_new): unnormalised probabilities, the factor that rescales the
    running sums, and the new running max. A row with nothing allowed so far keeps
    max -inf but exponentiates against 0, so it accumulates exact zeros, never NaN.
    """
    s = tl.where(allowed, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m_i - m_safe)
    p = tl.where(allowed, tl.exp(s - m_safe[:, None]), 0.0)
    return p, alpha, m_new


@triton.jit
def masked_softmax_rows(s, allowed):
    """Row softmax over ``allowed`` entries of a whole tile; empty rows are zeros."""
    p, _, _ = online_softmax_step(s, allowed, tl.full([s.shape[0]], float("-inf"), tl.float32))
    return p / safe_denominator(tl.sum(p, 1))[:, None]


@triton.jit
def safe_denominator(total):
    """A softmax denominator that turns empty rows (sum 0) into zeros instead of NaN."""
    return tl.where(total > 0, total, 1.0)


# ----------------------------------------------------------------------------- host helpers

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def compile_options(launch) -> dict:
    """Triton compile options of a launch: warps, pipeline stages, and FMA contraction pinned on
    (Triton 3.10 changes its default) so JIT and AOT kernels round the same way."""
    return {"num_warps": launch.num_warps, "num_stages": launch.num_stages, "enable_fp_fusion": True}


def is_interpreted(kernel) -> bool:
    """True when Triton runs ``kernel`` in its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return isinstance(kernel, InterpretedFunction)


def upcast_dot(kernel, dtype: torch.dtype) -> bool:
    """The interpreter's tl.dot mishandles BF16 operands; compute those in FP32 there."""
    return is_interpreted(kernel) and dtype == torch.bfloat16


def prepare_inputs(kernel, q, k, v, key_padding_mask, rel_bias):
    """Contiguous q, k, v, the mask as int8 (one byte per token) and the bias table, checked
    for what the kernels assume. Returns (q, k, v, mask_or_None, bias_or_None, max_distance)."""
    if q.dtype not in KERNEL_DTYPES:
        raise TypeError(f"the Triton kernels take float32, float16 or bfloat16, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    tensors = [t for t in (q, k, v, key_padding_mask, rel_bias) if t is not None]
    if not is_interpreted(kernel) and not all(t.is_cuda for t in tensors):
        raise RuntimeError(
            "the Triton kernels need CUDA tensors; on CPU set TRITON_INTERPRET=1 before importing triton"
        )
    if len({t.device for t in tensors}) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted({str(t.device) for t in tensors})}")
    q, k, v = (t.contiguous() for t in (q, k, v))
    mask = None if key_padding_mask is None else key_padding_mask.bool().to(torch.int8).contiguous()
    max_distance = 0
    if rel_bias is not None:
        max_distance = (rel_bias.shape[-1] - 1) // 2
        rel_bias = rel_bias.contiguous()
    return q, k, v, mask, rel_bias, max_distance
