"""The stages of landmark (Nystrom) attention as Triton device functions.

``seo_plugins.kernels.landmark`` composes them twice: as four kernels that spread the work
over the GPU (the JIT path), and as one program per (batch, head) that runs them in turn
(the single kernel TensorRT's AOT path launches). One copy of each stage keeps both exact
twins of ``seo_export.ops.landmark``.

Precision: landmarks, probabilities, pinv(A2) and W = pinv(A2) . (A3 . V) are FP32. The
O(S * L * D) products run on tensor cores in the 16-bit input type with FP32 sums, each FP32
operand split into hi + lo in that type (``precise_dot``): single rounding would lose u of
every operand, and pinv(A2) amplifies what A3 . V loses (by up to ~45x on test inputs).
"""

from __future__ import annotations

import triton
import triton.language as tl

from seo_plugins.kernels import (
    dot,
    load_tile,
    masked_softmax_rows,
    online_softmax_step,
    relative_bias,
    safe_denominator,
    token_mask,
)

# K step of ``staged_dot``: tl.dot's smallest.
MIN_K_STEP: tl.constexpr = tl.constexpr(16)


@triton.jit
def precise_dot(a, b, A_EXACT: tl.constexpr, B_EXACT: tl.constexpr, DT: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b with FP32 sums to about FP32 accuracy, on tensor cores in the input type DT.

    An operand that is not exactly a DT value (A_EXACT / B_EXACT false) is split into hi + lo
    in DT; the lo @ lo term (u^2 of the product) is dropped. FP32 inputs: one IEEE dot."""
    if DT == tl.float32:
        return dot(a, b, UPCAST)
    a_hi = a.to(DT)
    b_hi = b.to(DT)
    acc = dot(a_hi, b_hi, UPCAST)
    if not A_EXACT:
        acc += dot((a - a_hi.to(tl.float32)).to(DT), b_hi, UPCAST)
    if not B_EXACT:
        acc += dot(a_hi, (b - b_hi.to(tl.float32)).to(DT), UPCAST)
    return acc


@triton.jit
def segment_centres(offs_l, seq_len, NUM_LANDMARKS: tl.constexpr):
    """Each landmark's position: the centre of its segment of ceil(S / L) tokens, rounded down
    (only empty segments, never used, would round differently)."""
    seg = tl.cdiv(seq_len, NUM_LANDMARKS)
    seg_start = offs_l * seg
    seg_len = tl.minimum(tl.maximum(seq_len - seg_start, 0), seg)
    return seg_start + (seg_len - 1) // 2


@triton.jit
def segment_means(Q, K, Mask, base, batch, seq_len, offs_l, NUM_LANDMARKS: tl.constexpr, HEAD_DIM: tl.constexpr,
                  HAS_MASK: tl.constexpr, STEP: tl.constexpr, BLOCK_D: tl.constexpr):
    """Means of the q and k rows of the real tokens of the segments ``offs_l`` ([len(offs_l), BLOCK_D]
    FP32 each, zero rows for empty segments) and their counts, STEP tokens of every segment at a time."""
    seg = tl.cdiv(seq_len, NUM_LANDMARKS)
    start = offs_l * seg
    stop = tl.minimum(start + seg, seq_len)
    offs_d = tl.arange(0, BLOCK_D)
    q_sum = tl.zeros([offs_l.shape[0], BLOCK_D], tl.float32)
    k_sum = tl.zeros([offs_l.shape[0], BLOCK_D], tl.float32)
    count = tl.zeros([offs_l.shape[0]], tl.float32)
    for step in range(0, seg, STEP):
        tokens = start[:, None] + step + tl.arange(0, STEP)[None, :]  # [segments, STEP]
        real = token_mask(Mask, batch, seq_len, tokens, HAS_MASK) & (tokens < stop[:, None])
        rows = base + tokens[:, :, None] * HEAD_DIM + offs_d[None, None, :]
        ok = real[:, :, None] & (offs_d < HEAD_DIM)[None, None, :]
        q_sum += tl.sum(tl.load(Q + rows, mask=ok, other=0.0).to(tl.float32), 1)
        k_sum += tl.sum(tl.load(K + rows, mask=ok, other=0.0).to(tl.float32), 1)
        count += tl.sum(real.to(tl.float32), 1)
    denominator = safe_denominator(count)[:, None]
    return q_sum / denominator, k_sum / denominator, count


@triton.jit
def staged_dot(a, b, Scratch, K_STEP: tl.constexpr):
    """a @ b in IEEE FP32, K_STEP columns of a (rows of b) at a time, both operands staged through
    ``Scratch``, this program's FP32 workspace of a.numel() + b.numel() elements. An FMA dot (FP32 has
    no IEEE tensor-core path) holds each thread's rows of a and columns of b over the whole K in
    registers: 64 x 64 x 64 tiles spill at any warp count, 16-wide K steps do not. ``Scratch`` None:
    one dot straight from registers (the AOT kernel's tiles, at most 32 landmarks, fit)."""
    if Scratch is None:
        acc = dot(a, b, False)
    else:
        M: tl.constexpr = a.shape[0]
        K: tl.constexpr = a.shape[1]
        N: tl.constexpr = b.shape[1]
        offs_m = tl.arange(0, M)
        offs_n = tl.arange(0, N)
        ScratchB = Scratch + M * K
        tl.debug_barrier()  # every thread has read the previous operands ...
        tl.store(Scratch + offs_m[:, None] * K + tl.arange(0, K)[None, :], a)
        tl.store(ScratchB + tl.arange(0, K)[:, None] * N + offs_n[None, :], b)
        tl.debug_barrier()  # ... and sees these
        acc = tl.zeros([M, N], tl.float32)
        for k0 in range(0, K, K_STEP):  # one FMA chain over K, as one dot would sum
            offs_k = k0 + tl.arange(0, K_STEP)
            acc = tl.dot(tl.load(Scratch + offs_m[:, None] * K + offs_k[None, :]),
                         tl.load(ScratchB + offs_k[:, None] * N + offs_n[None, :]), acc, input_precision="ieee",
                         out_dtype=tl.float32)
    return acc


@triton.jit
def newton_schulz_pinv(a, Scratch, PINV_ITERATIONS: tl.constexpr, BLOCK_L: tl.constexpr):
    """Pseudo-inverse of the [BLOCK_L, BLOCK_L] FP32 tile ``a`` (zero rows/columns outside the
    real landmarks stay zero), starting from a^T / (max column sum * max row sum) of this
    (batch, head) alone. IEEE FP32 throughout: the iteration amplifies rounding. Products go
    through ``staged_dot`` (``Scratch`` None: from registers)."""
    offs = tl.arange(0, BLOCK_L)
    diagonal = offs[:, None] == offs[None, :]
    col = tl.max(tl.sum(tl.abs(a), 0), 0)
    row = tl.max(tl.sum(tl.abs(a), 1), 0)
    norm = col * row
    z = tl.trans(a) * tl.where(norm > 0, 1.0 / tl.where(norm > 0, norm, 1.0), 0.0)
    for _ in range(PINV_ITERATIONS):
        az = staged_dot(a, z, Scratch, MIN_K_STEP)
        t = tl.where(diagonal, 7.0, 0.0) - az
        t = tl.where(diagonal, 15.0, 0.0) - staged_dot(az, t, Scratch, MIN_K_STEP)
        t = tl.where(diagonal, 13.0, 0.0) - staged_dot(az, t, Scratch, MIN_K_STEP)
        z = 0.25 * staged_dot(z, t, Scratch, MIN_K_STEP)
    return z


@triton.jit
def landmark_pinv(q_land, k_land, valid, centre, Bias, head, Scratch, SCALE: tl.constexpr, MAX_DISTANCE: tl.constexpr,
                  HAS_BIAS: tl.constexpr, PINV_ITERATIONS: tl.constexpr, BLOCK_L: tl.constexpr):
    """pinv(A2): A2 is the softmax between valid landmarks (empty segments drop out). ``Scratch``: see
    ``staged_dot``."""
    s2 = staged_dot(q_land, tl.trans(k_land), Scratch, MIN_K_STEP) * SCALE
    if HAS_BIAS:
        s2 += relative_bias(Bias, head, centre[None, :] - centre[:, None], MAX_DISTANCE)
    return newton_schulz_pinv(masked_softmax_rows(s2, valid[:, None] & valid[None, :]), Scratch, PINV_ITERATIONS,
                              BLOCK_L)


@triton.jit
def landmark_keys(q_land, valid, centre, K, V, Mask, Bias, base, batch, head, seq_len, start, stop,
                  SCALE: tl.constexpr, MAX_DISTANCE: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr,
                  HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """A3 . V over the keys [start, stop) (``start`` a multiple of BLOCK_N) as a streaming softmax:
    (running max, sum, unnormalised [BLOCK_L, BLOCK_D] accumulator), merged by ``merge_softmax``."""
    DT: tl.constexpr = K.dtype.element_ty
    offs_d = tl.arange(0, BLOCK_D)
    m3 = tl.full([q_land.shape[0]], float("-inf"), tl.float32)
    l3 = tl.zeros([q_land.shape[0]], tl.float32)
    acc3 = tl.zeros([q_land.shape[0], BLOCK_D], tl.float32)
    for s0 in range(start, stop, BLOCK_N):
        offs_n = s0 + tl.arange(0, BLOCK_N)
        k = load_tile(K + base, offs_n, offs_d, seq_len, HEAD_DIM)
        v = load_tile(V + base, offs_n, offs_d, seq_len, HEAD_DIM)
        s3 = precise_dot(q_land, tl.trans(k), False, True, DT, UPCAST) * SCALE
        if HAS_BIAS:
            s3 += relative_bias(Bias, head, offs_n[None, :] - centre[:, None], MAX_DISTANCE)
        allowed = valid[:, None] & token_mask(Mask, batch, seq_len, offs_n, HAS_MASK)[None, :]
        p, alpha, m3 = online_softmax_step(s3, allowed, m3)
        l3 = l3 * alpha + tl.sum(p, 1)
        acc3 = acc3 * alpha[:, None] + precise_dot(p, v, False, True, DT, UPCAST)
    return m3, l3, acc3


@triton.jit
def merge_softmax(m, l, acc, m_part, l_part, acc_part):
    """Two streaming-softmax states over disjoint keys as one; rows with no key yet stay zero, never NaN."""
    m_new = tl.maximum(m, m_part)
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m - m_safe)
    beta = tl.exp(m_part - m_safe)
    return m_new, l * alpha + l_part * beta, acc * alpha[:, None] + acc_part * beta[:, None]


@triton.jit
def landmark_values(a2_inv, l3, acc3, Scratch):
    """W = pinv(A2) . (A3 . V), [BLOCK_L, BLOCK_D] FP32 (L x L x D: small, so IEEE; ``Scratch``: see
    ``staged_dot``)."""
    return staged_dot(a2_inv, acc3 / safe_denominator(l3)[:, None], Scratch, MIN_K_STEP)


@triton.jit
def landmark_queries(Q, Out, Bias, base, head, seq_len, offs_m, k_land, w, valid, centre, SCALE: tl.constexpr,
                     MAX_DISTANCE: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_BIAS: tl.constexpr,
                     UPCAST: tl.constexpr, BLOCK_D: tl.constexpr):
    """Out rows ``offs_m`` = A1 . W, A1 the softmax of each query over the valid landmarks
    (a sample with none gets zeros)."""
    DT: tl.constexpr = Q.dtype.element_ty
    offs_d = tl.arange(0, BLOCK_D)
    q = load_tile(Q + base, offs_m, offs_d, seq_len, HEAD_DIM)
    s1 = precise_dot(q, tl.trans(k_land), True, False, DT, UPCAST) * SCALE
    if HAS_BIAS:
        s1 += relative_bias(Bias, head, centre[None, :] - offs_m[:, None], MAX_DISTANCE)
    a1 = masked_softmax_rows(s1, valid[None, :])
    # W / max|W| keeps the 16-bit split of W inside FP16's range whatever pinv(A2) amplifies.
    w_max = tl.max(tl.max(tl.abs(w), 1), 0)
    w_scale = tl.where(w_max > 0, w_max, 1.0)
    out = precise_dot(a1, w / w_scale, False, False, DT, UPCAST) * w_scale
    ok = (offs_m[:, None] < seq_len) & (offs_d[None, :] < HEAD_DIM)
    tl.store(Out + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out.to(Out.dtype.element_ty), mask=ok)
