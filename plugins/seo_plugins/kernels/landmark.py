"""Landmark (Nystrom) attention kernels: four that spread over the GPU, and one for TensorRT's AOT path.

Semantics are those of ``seo_export.ops.landmark``: L segments of ceil(S / L) tokens,
landmarks are masked segment means, empty segments drop out of every softmax, the
relative bias uses each landmark's segment centre (rounded down), and the output is
A1 . pinv(A2) . (A3 . V) with a Newton-Schulz pseudo-inverse scaled per (batch, head).

The JIT path (``landmark_attention``, ``run_landmark``) launches four kernels:
  1. ``landmark_means_fwd``   one program per (landmark, batch, head): segment means;
  2. ``landmark_keys_fwd``    one per (key split, batch, head): partial A3 . V;
  3. ``landmark_pinv_fwd``    one per (batch, head): pinv(A2), merged A3 . V, W = pinv(A2) . (A3 . V),
                              the L x L products in 16-wide K steps through a scratch workspace;
  4. ``landmark_queries_fwd`` one per (query block, batch, head): out = A1 . W.
Between them live FP32 workspaces of O(B * H * L * D) (times the key splits for 2).

TensorRT's AOT path launches one kernel, ``landmark_fwd``: one program per (batch, head) runs
the same stages (``landmark_parts``) in turn. It is correct but leaves most of a GPU idle; see
plugins/README.md.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seo_plugins.kernels import compile_options, prepare_inputs, upcast_dot
from seo_plugins.kernels.landmark_parts import (
    landmark_keys,
    landmark_pinv,
    landmark_queries,
    landmark_values,
    merge_softmax,
    segment_centres,
    segment_means,
)
from seo_plugins.launch import landmark_launch, landmark_stages_launch


@triton.jit
def _program(num_heads, seq_len, HEAD_DIM: tl.constexpr):
    """(batch, head, element offset of this (batch, head)'s [S, D] rows) of program axis 1."""
    bh = tl.program_id(1)
    return bh // num_heads, bh % num_heads, bh.to(tl.int64) * seq_len * HEAD_DIM  # int64: B*H*S*D may pass 2**31


@triton.jit
def _tile_ptrs(ptr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pointers of a [BLOCK_L, BLOCK_D] row-major workspace tile at ``ptr``."""
    return ptr + tl.arange(0, BLOCK_L)[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]


@triton.jit
def landmark_means_fwd(
    Q, K, Mask, seq_len, num_heads,
    QLand, KLand, Count,  # workspaces [B*H, BLOCK_L, BLOCK_D] x2, [B*H, BLOCK_L] FP32
    NUM_LANDMARKS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr,
    SEGMENTS: tl.constexpr, STEP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    batch, _, base = _program(num_heads, seq_len, HEAD_DIM)
    # SEGMENTS landmarks per program; those past the last (empty segments) write zeros.
    offs_l = tl.program_id(0) * SEGMENTS + tl.arange(0, SEGMENTS)
    q_mean, k_mean, count = segment_means(Q, K, Mask, base, batch, seq_len, offs_l, NUM_LANDMARKS, HEAD_DIM,
                                          HAS_MASK, STEP, BLOCK_D)
    rows = tl.program_id(1) * BLOCK_L + offs_l
    tl.store(QLand + rows[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :], q_mean)
    tl.store(KLand + rows[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :], k_mean)
    tl.store(Count + rows, count)


@triton.jit
def landmark_keys_fwd(
    K, V, Mask, Bias, seq_len, num_heads, keys_per_split,
    QLand, Count, MPart, LPart, AccPart,  # partial softmax states [B*H, splits, BLOCK_L(, BLOCK_D)] FP32
    NUM_LANDMARKS: tl.constexpr, MAX_DISTANCE: tl.constexpr, SCALE: tl.constexpr, HEAD_DIM: tl.constexpr,
    HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, UPCAST_DOT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    split = tl.program_id(0)
    batch, head, base = _program(num_heads, seq_len, HEAD_DIM)
    bh = tl.program_id(1)
    offs_l = tl.arange(0, BLOCK_L)
    q_land = tl.load(_tile_ptrs(QLand + bh * BLOCK_L * BLOCK_D, BLOCK_L, BLOCK_D))
    valid = tl.load(Count + bh * BLOCK_L + offs_l) > 0
    start = split * keys_per_split
    m3, l3, acc3 = landmark_keys(q_land, valid, segment_centres(offs_l, seq_len, NUM_LANDMARKS), K, V, Mask, Bias,
                                 base, batch, head, seq_len, start, tl.minimum(start + keys_per_split, seq_len),
                                 SCALE, MAX_DISTANCE, HEAD_DIM, HAS_MASK, HAS_BIAS, UPCAST_DOT, BLOCK_N, BLOCK_D)
    part = bh * tl.num_programs(0) + split
    tl.store(MPart + part * BLOCK_L + offs_l, m3)
    tl.store(LPart + part * BLOCK_L + offs_l, l3)
    tl.store(_tile_ptrs(AccPart + part * BLOCK_L * BLOCK_D, BLOCK_L, BLOCK_D), acc3)


@triton.jit
def landmark_pinv_fwd(
    Bias, seq_len, num_heads, num_splits,
    QLand, KLand, Count, MPart, LPart, AccPart,
    W,  # workspace [B*H, BLOCK_L, BLOCK_D] FP32
    Scratch,  # workspace [B*H, SCRATCH] FP32: the operands of the L x L products (``staged_dot``)
    NUM_LANDMARKS: tl.constexpr, PINV_ITERATIONS: tl.constexpr, MAX_DISTANCE: tl.constexpr, SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr, SCRATCH: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bh = tl.program_id(0)
    head = bh % num_heads
    offs_l = tl.arange(0, BLOCK_L)
    tile = bh * BLOCK_L * BLOCK_D
    scratch = Scratch + bh.to(tl.int64) * SCRATCH
    valid = tl.load(Count + bh * BLOCK_L + offs_l) > 0
    a2_inv = landmark_pinv(tl.load(_tile_ptrs(QLand + tile, BLOCK_L, BLOCK_D)),
                           tl.load(_tile_ptrs(KLand + tile, BLOCK_L, BLOCK_D)), valid,
                           segment_centres(offs_l, seq_len, NUM_LANDMARKS), Bias, head, scratch, SCALE, MAX_DISTANCE,
                           HAS_BIAS, PINV_ITERATIONS, BLOCK_L)
    m3 = tl.full([BLOCK_L], float("-inf"), tl.float32)
    l3 = tl.zeros([BLOCK_L], tl.float32)
    acc3 = tl.zeros([BLOCK_L, BLOCK_D], tl.float32)
    for split in range(num_splits):
        part = bh * num_splits + split
        m3, l3, acc3 = merge_softmax(m3, l3, acc3, tl.load(MPart + part * BLOCK_L + offs_l),
                                     tl.load(LPart + part * BLOCK_L + offs_l),
                                     tl.load(_tile_ptrs(AccPart + part * BLOCK_L * BLOCK_D, BLOCK_L, BLOCK_D)))
    tl.store(_tile_ptrs(W + tile, BLOCK_L, BLOCK_D), landmark_values(a2_inv, l3, acc3, scratch))


@triton.jit
def landmark_queries_fwd(
    Q, Bias, seq_len, num_heads,
    KLand, Count, W,
    Out,  # output [B, H, S, D], the dtype of q
    NUM_LANDMARKS: tl.constexpr, MAX_DISTANCE: tl.constexpr, SCALE: tl.constexpr, HEAD_DIM: tl.constexpr,
    HAS_BIAS: tl.constexpr, UPCAST_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    _, head, base = _program(num_heads, seq_len, HEAD_DIM)
    bh = tl.program_id(1)
    offs_l = tl.arange(0, BLOCK_L)
    tile = bh * BLOCK_L * BLOCK_D
    landmark_queries(Q, Out, Bias, base, head, seq_len, tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M),
                     tl.load(_tile_ptrs(KLand + tile, BLOCK_L, BLOCK_D)), tl.load(_tile_ptrs(W + tile, BLOCK_L, BLOCK_D)),
                     tl.load(Count + bh * BLOCK_L + offs_l) > 0, segment_centres(offs_l, seq_len, NUM_LANDMARKS),
                     SCALE, MAX_DISTANCE, HEAD_DIM, HAS_BIAS, UPCAST_DOT, BLOCK_D)


@triton.jit
def landmark_fwd(
    Q, K, V, Mask, Bias,  # inputs: q, k, v [B, H, S, D]; Mask [B, S] int8; Bias [H, 2K+1]
    num_heads, seq_len,  # run-time shape ints
    Out,  # output [B, H, S, D], the dtype of q
    NUM_LANDMARKS: tl.constexpr, PINV_ITERATIONS: tl.constexpr, MAX_DISTANCE: tl.constexpr, SCALE: tl.constexpr,
    HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, UPCAST_DOT: tl.constexpr,
    BLOCK_S: tl.constexpr, MEANS_STEP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """The single AOT kernel: one program per (batch, head) runs every stage, in TensorRT's argument order."""
    bh = tl.program_id(0)
    batch = bh // num_heads
    head = bh % num_heads
    base = bh.to(tl.int64) * seq_len * HEAD_DIM
    offs_l = tl.arange(0, BLOCK_L)
    q_land, k_land, count = segment_means(Q, K, Mask, base, batch, seq_len, offs_l, NUM_LANDMARKS, HEAD_DIM,
                                          HAS_MASK, MEANS_STEP, BLOCK_D)
    valid = count > 0
    centre = segment_centres(offs_l, seq_len, NUM_LANDMARKS)
    a2_inv = landmark_pinv(q_land, k_land, valid, centre, Bias, head, None, SCALE, MAX_DISTANCE, HAS_BIAS,
                           PINV_ITERATIONS, BLOCK_L)  # no scratch: at most 32 landmarks fit in registers
    _, l3, acc3 = landmark_keys(q_land, valid, centre, K, V, Mask, Bias, base, batch, head, seq_len, 0, seq_len,
                                SCALE, MAX_DISTANCE, HEAD_DIM, HAS_MASK, HAS_BIAS, UPCAST_DOT, BLOCK_S, BLOCK_D)
    w = landmark_values(a2_inv, l3, acc3, None)
    for start in range(0, seq_len, BLOCK_S):
        landmark_queries(Q, Out, Bias, base, head, seq_len, start + tl.arange(0, BLOCK_S), k_land, w, valid, centre,
                         SCALE, MAX_DISTANCE, HEAD_DIM, HAS_BIAS, UPCAST_DOT, BLOCK_D)


# ----------------------------------------------------------------------------- host side


def _check_iterations(pinv_iterations: int) -> None:
    if pinv_iterations < 0:
        raise ValueError(f"pinv_iterations must be >= 0, got {pinv_iterations}")


def landmark_constants(head_dim, elem_bytes, num_landmarks, pinv_iterations, max_distance, scale, has_mask,
                       has_bias, upcast_dot=False):
    """Tiles and compile-time constants of the single AOT kernel ``landmark_fwd`` (the AOT build and tests)."""
    _check_iterations(pinv_iterations)
    launch = landmark_launch(head_dim, num_landmarks, elem_bytes)
    constants = dict(
        NUM_LANDMARKS=num_landmarks, PINV_ITERATIONS=pinv_iterations, MAX_DISTANCE=max_distance, SCALE=float(scale),
        HEAD_DIM=head_dim, HAS_MASK=has_mask, HAS_BIAS=has_bias, UPCAST_DOT=upcast_dot, **launch.constexprs(),
    )
    return launch, constants


def stage_kernels(tiles, seq, head_dim, num_landmarks, pinv_iterations, max_distance, scale, *, has_mask, has_bias,
                  upcast=False):
    """{stage: (kernel, constexprs, compile options)} of the JIT path's four kernels in launch order, for
    ``tiles`` (``landmark_stages_launch``) and sequence length ``seq`` (the means kernel's tiles depend on
    it): what ``run_landmark`` launches and what tests/plugins/test_ptxas.py compiles for ptxas."""
    common = dict(NUM_LANDMARKS=num_landmarks, BLOCK_L=tiles.block_l, BLOCK_D=tiles.block_d)
    shared = dict(MAX_DISTANCE=max_distance, SCALE=float(scale), HAS_BIAS=has_bias)
    streaming = compile_options(tiles)
    return {
        "means": (landmark_means_fwd, dict(HEAD_DIM=head_dim, HAS_MASK=has_mask, **tiles.means_constexprs(seq),
                                           **common), streaming),
        "keys": (landmark_keys_fwd, dict(HEAD_DIM=head_dim, HAS_MASK=has_mask, UPCAST_DOT=upcast,
                                         BLOCK_N=tiles.block_n, **common, **shared), streaming),
        "pinv": (landmark_pinv_fwd, dict(PINV_ITERATIONS=pinv_iterations, SCRATCH=tiles.pinv_scratch, **common,
                                         **shared), {**streaming, "num_warps": tiles.pinv_warps, "num_stages": 1}),
        "queries": (landmark_queries_fwd, dict(HEAD_DIM=head_dim, UPCAST_DOT=upcast, BLOCK_M=tiles.block_m,
                                               **common, **shared), streaming),
    }


def stage_signature(kernel, dtype: str) -> dict[str, str]:
    """Triton's types of ``kernel``'s run-time parameters (one of ``stage_kernels``'), inputs of ``dtype``
    (``fp16``, ``bf16``, ``fp32``): q, k, v, bias and out in it, the mask int8, workspaces FP32."""
    types = {"Q": f"*{dtype}", "K": f"*{dtype}", "V": f"*{dtype}", "Bias": f"*{dtype}", "Out": f"*{dtype}",
             "Mask": "*i8", "seq_len": "i32", "num_heads": "i32", "keys_per_split": "i32", "num_splits": "i32"}
    return {name: types.get(name, "*fp32") for name, param in zip(kernel.arg_names, kernel.params)
            if not param.is_constexpr}


def run_landmark(out, q, k, v, mask, bias, num_landmarks, pinv_iterations, max_distance, scale):
    """Launch the four JIT-path kernels into ``out`` (contiguous, like q). q, k, v contiguous [B, H, S, D];
    mask None or contiguous int8 [B, S]; bias None or contiguous [H, 2K+1]."""
    _check_iterations(pinv_iterations)
    batch, heads, seq, head_dim = q.shape
    if out.numel() == 0:
        return out
    tiles = landmark_stages_launch(head_dim, num_landmarks, q.element_size())
    grids = tiles.grids(batch, heads, seq)
    splits, keys_per_split = tiles.key_splits(batch, heads, seq)
    block_l, block_d = tiles.block_l, tiles.block_d
    stages = stage_kernels(tiles, seq, head_dim, num_landmarks, pinv_iterations, max_distance, scale,
                           has_mask=mask is not None, has_bias=bias is not None,
                           upcast=upcast_dot(landmark_fwd, q.dtype))

    def workspace(*shape):
        return torch.empty(batch * heads, *shape, dtype=torch.float32, device=q.device)

    # Padded to whole [BLOCK_L, BLOCK_D] tiles, so loads need no masks; the means kernel writes the
    # real landmarks' rows, the zeros elsewhere make the padding landmarks empty segments.
    q_land, k_land = (workspace(block_l, block_d).zero_() for _ in range(2))
    count = workspace(block_l).zero_()
    w, m_part, l_part = workspace(block_l, block_d), workspace(splits, block_l), workspace(splits, block_l)
    acc_part = workspace(splits, block_l, block_d)
    scratch = workspace(tiles.pinv_scratch)
    arguments = {
        "means": (q, k, mask, seq, heads, q_land, k_land, count),
        "keys": (k, v, mask, bias, seq, heads, keys_per_split, q_land, count, m_part, l_part, acc_part),
        "pinv": (bias, seq, heads, splits, q_land, k_land, count, m_part, l_part, acc_part, w, scratch),
        "queries": (q, bias, seq, heads, k_land, count, w, out),
    }
    for stage, (kernel, constexprs, options) in stages.items():
        kernel[grids[stage]](*arguments[stage], **constexprs, **options)
    return out


def landmark_attention(q, k, v, num_landmarks, pinv_iterations, key_padding_mask=None, rel_bias=None, *, scale):
    """Landmark attention on [B, H, S, D] tensors by the JIT path's kernels; returns a new tensor like q."""
    q, k, v, mask, bias, max_distance = prepare_inputs(landmark_fwd, q, k, v, key_padding_mask, rel_bias)
    return run_landmark(torch.empty_like(q), q, k, v, mask, bias, num_landmarks, pinv_iterations, max_distance, scale)


def landmark_attention_aot_kernel(q, k, v, num_landmarks, pinv_iterations, key_padding_mask=None, rel_bias=None, *,
                                  scale):
    """The single AOT kernel ``landmark_fwd`` launched through Triton (tests compare it with the reference)."""
    q, k, v, mask, bias, max_distance = prepare_inputs(landmark_fwd, q, k, v, key_padding_mask, rel_bias)
    out = torch.empty_like(q)
    if out.numel() == 0:
        return out
    batch, heads, seq, head_dim = q.shape
    launch, constants = landmark_constants(head_dim, q.element_size(), num_landmarks, pinv_iterations, max_distance, scale,
                                           mask is not None, bias is not None, upcast_dot(landmark_fwd, q.dtype))
    landmark_fwd[launch.grid(batch, heads, seq)](q, k, v, mask, bias, heads, seq, out, **constants,
                                                 **compile_options(launch))
    return out
