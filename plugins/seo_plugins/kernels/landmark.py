"""Landmark (Nystrom) attention in one kernel: one program per (batch, head) runs every stage.

Semantics are those of ``seo_export.ops.landmark``: L segments of ceil(S / L) tokens,
landmarks are masked segment means, empty segments drop out of every softmax, the
relative bias uses each landmark's segment centre (rounded down), and the output is
A1 . pinv(A2) . (A3 . V) with a Newton-Schulz pseudo-inverse scaled per (batch, head).

Three passes over the sequence in BLOCK_S steps, each O(S * L * D):
  1. landmark sums and token counts;  2. A3 . V by a streaming softmax over keys;
  3. per query step, A1 . W where W = pinv(A2) . (A3 . V).
Everything after loading runs in FP32 (landmarks are FP32 means; rounding them back to
16 bits would perturb every logit, and the pseudo-inverse needs FP32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seo_plugins.kernels import (
    compile_options,
    dot,
    load_tile,
    masked_softmax_rows,
    online_softmax_step,
    prepare_inputs,
    relative_bias,
    safe_denominator,
    token_mask,
)
from seo_plugins.launch import landmark_launch


@triton.jit
def newton_schulz_pinv(a, PINV_ITERATIONS: tl.constexpr, BLOCK_L: tl.constexpr):
    """Pseudo-inverse of the [BLOCK_L, BLOCK_L] FP32 tile ``a`` (zero rows/columns outside the
    real landmarks stay zero), starting from a^T / (max column sum * max row sum)."""
    offs = tl.arange(0, BLOCK_L)
    eye = (offs[:, None] == offs[None, :]).to(tl.float32)
    col = tl.max(tl.sum(tl.abs(a), 0), 0)
    row = tl.max(tl.sum(tl.abs(a), 1), 0)
    norm = col * row
    z = tl.trans(a) * tl.where(norm > 0, 1.0 / tl.where(norm > 0, norm, 1.0), 0.0)
    for _ in range(PINV_ITERATIONS):
        az = dot(a, z, False)
        t = 7.0 * eye - az
        t = 15.0 * eye - dot(az, t, False)
        t = 13.0 * eye - dot(az, t, False)
        z = 0.25 * dot(z, t, False)
    return z


@triton.jit
def landmark_fwd(
    Q, K, V, Mask, Bias,  # inputs: q, k, v [B, H, S, D]; Mask [B, S] int8; Bias [H, 2K+1]
    num_heads, seq_len,  # run-time shape ints
    Out,  # output [B, H, S, D], the dtype of q
    NUM_LANDMARKS: tl.constexpr, PINV_ITERATIONS: tl.constexpr, MAX_DISTANCE: tl.constexpr, SCALE: tl.constexpr,
    HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bh = tl.program_id(0)
    batch = bh // num_heads
    head = bh % num_heads
    base = bh.to(tl.int64) * seq_len * HEAD_DIM
    offs_l = tl.arange(0, BLOCK_L)
    offs_d = tl.arange(0, BLOCK_D)
    seg = tl.cdiv(seq_len, NUM_LANDMARKS)
    seg_start = offs_l * seg
    seg_len = tl.minimum(tl.maximum(seq_len - seg_start, 0), seg)
    # Centre rounded down; only empty segments (never used) would round differently.
    centre = seg_start + (seg_len - 1) // 2

    # Pass 1: landmark means = (one-hot segment membership of real tokens) @ rows / count.
    q_sum = tl.zeros([BLOCK_L, BLOCK_D], tl.float32)
    k_sum = tl.zeros([BLOCK_L, BLOCK_D], tl.float32)
    count = tl.zeros([BLOCK_L], tl.float32)
    for start in range(0, seq_len, BLOCK_S):
        offs_s = start + tl.arange(0, BLOCK_S)
        real = token_mask(Mask, batch, seq_len, offs_s, HAS_MASK)
        member = ((offs_s[None, :] // seg == offs_l[:, None]) & real[None, :]).to(tl.float32)
        q_sum += dot(member, load_tile(Q + base, offs_s, offs_d, seq_len, HEAD_DIM).to(tl.float32), False)
        k_sum += dot(member, load_tile(K + base, offs_s, offs_d, seq_len, HEAD_DIM).to(tl.float32), False)
        count += tl.sum(member, 1)
    valid = count > 0
    q_land = q_sum / safe_denominator(count)[:, None]
    k_land = k_sum / safe_denominator(count)[:, None]

    # A2 between landmarks, and its pseudo-inverse.
    s2 = dot(q_land, tl.trans(k_land), False) * SCALE
    if HAS_BIAS:
        s2 += relative_bias(Bias, head, centre[None, :] - centre[:, None], MAX_DISTANCE)
    a2_inv = newton_schulz_pinv(masked_softmax_rows(s2, valid[:, None] & valid[None, :]), PINV_ITERATIONS, BLOCK_L)

    # Pass 2: A3 . V, A3 = softmax over real keys of landmark-to-key logits (streaming).
    m3 = tl.full([BLOCK_L], float("-inf"), tl.float32)
    l3 = tl.zeros([BLOCK_L], tl.float32)
    acc3 = tl.zeros([BLOCK_L, BLOCK_D], tl.float32)
    for start in range(0, seq_len, BLOCK_S):
        offs_s = start + tl.arange(0, BLOCK_S)
        k = load_tile(K + base, offs_s, offs_d, seq_len, HEAD_DIM).to(tl.float32)
        v = load_tile(V + base, offs_s, offs_d, seq_len, HEAD_DIM).to(tl.float32)
        s3 = dot(q_land, tl.trans(k), False) * SCALE
        if HAS_BIAS:
            s3 += relative_bias(Bias, head, offs_s[None, :] - centre[:, None], MAX_DISTANCE)
        allowed = valid[:, None] & token_mask(Mask, batch, seq_len, offs_s, HAS_MASK)[None, :]
        p, alpha, m3 = online_softmax_step(s3, allowed, m3)
        l3 = l3 * alpha + tl.sum(p, 1)
        acc3 = acc3 * alpha[:, None] + dot(p, v, False)
    w = dot(a2_inv, acc3 / safe_denominator(l3)[:, None], False)

    # Pass 3: every query row attends the valid landmarks (A1), then out = A1 . W.
    for start in range(0, seq_len, BLOCK_S):
        offs_s = start + tl.arange(0, BLOCK_S)
        q = load_tile(Q + base, offs_s, offs_d, seq_len, HEAD_DIM).to(tl.float32)
        s1 = dot(q, tl.trans(k_land), False) * SCALE
        if HAS_BIAS:
            s1 += relative_bias(Bias, head, centre[None, :] - offs_s[:, None], MAX_DISTANCE)
        out = dot(masked_softmax_rows(s1, valid[None, :]), w, False)
        ok = (offs_s[:, None] < seq_len) & (offs_d[None, :] < HEAD_DIM)
        tl.store(Out + base + offs_s[:, None] * HEAD_DIM + offs_d[None, :], out.to(Out.dtype.element_ty), mask=ok)


def landmark_constants(head_dim, num_landmarks, pinv_iterations, max_distance, scale, has_mask, has_bias):
    """Tiles and compile-time constants of one configuration (shared by the JIT launch and AOT)."""
    if pinv_iterations < 0:
        raise ValueError(f"pinv_iterations must be >= 0, got {pinv_iterations}")
    launch = landmark_launch(head_dim, num_landmarks)
    constants = dict(
        NUM_LANDMARKS=num_landmarks, PINV_ITERATIONS=pinv_iterations, MAX_DISTANCE=max_distance, SCALE=float(scale),
        HEAD_DIM=head_dim, HAS_MASK=has_mask, HAS_BIAS=has_bias, **launch.constexprs(),
    )
    return launch, constants


def landmark_attention(q, k, v, num_landmarks, pinv_iterations, key_padding_mask=None, rel_bias=None, *, scale):
    """Launch ``landmark_fwd`` on [B, H, S, D] tensors; returns a new tensor like q."""
    q, k, v, mask, bias, max_distance = prepare_inputs(landmark_fwd, q, k, v, key_padding_mask, rel_bias)
    batch, heads, seq, head_dim = q.shape
    out = torch.empty_like(q)
    if out.numel() == 0:
        return out
    launch, constants = landmark_constants(
        head_dim, num_landmarks, pinv_iterations, max_distance, scale, mask is not None, bias is not None
    )
    landmark_fwd[launch.grid(batch, heads, seq)](
        q, k, v, mask, bias, heads, seq, out, **constants, **compile_options(launch)
    )
    return out
