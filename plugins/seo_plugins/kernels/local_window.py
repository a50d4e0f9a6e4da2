"""Local-window attention: flash-style online softmax over the key band only.

Query i sees keys j with -WINDOW_LEFT <= j - i <= WINDOW_RIGHT. The program for a
block of BLOCK_M queries visits only the key blocks that overlap the block's band
[m0 - WINDOW_LEFT, m0 + BLOCK_M - 1 + WINDOW_RIGHT], so the cost is O(S * window).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seo_plugins.kernels import (
    compile_options,
    dot,
    load_tile,
    online_softmax_step,
    prepare_inputs,
    relative_bias,
    safe_denominator,
    token_mask,
    upcast_dot,
)
from seo_plugins.launch import local_window_launch


@triton.jit
def local_window_fwd(
    Q, K, V, Mask, Bias,  # inputs: q, k, v [B, H, S, D]; Mask [B, S] int8; Bias [H, 2K+1]
    num_heads, seq_len,  # run-time shape ints
    Out,  # output [B, H, S, D], the dtype of q
    WINDOW_LEFT: tl.constexpr, WINDOW_RIGHT: tl.constexpr, MAX_DISTANCE: tl.constexpr, SCALE: tl.constexpr,
    HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, UPCAST_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    batch = bh // num_heads
    head = bh % num_heads
    base = bh.to(tl.int64) * seq_len * HEAD_DIM  # int64: B*H*S*D may pass 2**31
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = load_tile(Q + base, offs_m, offs_d, seq_len, HEAD_DIM)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    # Key blocks overlapping the band; the start is aligned to BLOCK_N for aligned loads.
    lo = (tl.maximum(m0 - WINDOW_LEFT, 0) // BLOCK_N) * BLOCK_N
    hi = tl.minimum(m0 + BLOCK_M + WINDOW_RIGHT, seq_len)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = load_tile(K + base, offs_n, offs_d, seq_len, HEAD_DIM)
        v = load_tile(V + base, offs_n, offs_d, seq_len, HEAD_DIM)
        s = dot(q, tl.trans(k), UPCAST_DOT) * SCALE
        rel = offs_n[None, :] - offs_m[:, None]
        if HAS_BIAS:
            s += relative_bias(Bias, head, rel, MAX_DISTANCE)
        allowed = (rel >= -WINDOW_LEFT) & (rel <= WINDOW_RIGHT)
        allowed = allowed & token_mask(Mask, batch, seq_len, offs_n, HAS_MASK)[None, :]
        p, alpha, m_i = online_softmax_step(s, allowed, m_i)
        l_i = l_i * alpha + tl.sum(p, 1)
        # P in the value dtype (as flash attention does): tensor-core P @ V with FP32 sums.
        acc = acc * alpha[:, None] + dot(p.to(v.dtype), v, UPCAST_DOT)

    out = acc / safe_denominator(l_i)[:, None]
    ok = (offs_m[:, None] < seq_len) & (offs_d[None, :] < HEAD_DIM)
    tl.store(Out + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out.to(Out.dtype.element_ty), mask=ok)


def local_window_constants(head_dim, elem_bytes, window_left, window_right, max_distance, scale, has_mask, has_bias,
                           upcast_dot=False):
    """Tiles and compile-time constants of one configuration (shared by the JIT launch and AOT)."""
    launch = local_window_launch(head_dim, window_left, window_right, elem_bytes)
    constants = dict(
        WINDOW_LEFT=window_left, WINDOW_RIGHT=window_right, MAX_DISTANCE=max_distance, SCALE=float(scale),
        HEAD_DIM=head_dim, HAS_MASK=has_mask, HAS_BIAS=has_bias, UPCAST_DOT=upcast_dot, **launch.constexprs(),
    )
    return launch, constants


def local_window_attention(q, k, v, window_left, window_right, key_padding_mask=None, rel_bias=None, *, scale):
    """Launch ``local_window_fwd`` on [B, H, S, D] tensors; returns a new tensor like q."""
    q, k, v, mask, bias, max_distance = prepare_inputs(local_window_fwd, q, k, v, key_padding_mask, rel_bias)
    batch, heads, seq, head_dim = q.shape
    out = torch.empty_like(q)
    if out.numel() == 0:
        return out
    launch, constants = local_window_constants(
        head_dim, q.element_size(), window_left, window_right, max_distance, scale, mask is not None, bias is not None,
        upcast_dot=upcast_dot(local_window_fwd, q.dtype),
    )
    local_window_fwd[launch.grid(batch, heads, seq)](
        q, k, v, mask, bias, heads, seq, out, **constants, **compile_options(launch)
    )
    return out
