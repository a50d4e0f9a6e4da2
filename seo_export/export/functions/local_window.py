"""Portable body of ``seo.LocalWindowAttention``: banded blocks, O(S * window), no S x S matrix.

Mirrors ``seo_export.ops.local_window.local_window_attention_reference``. With
``width = window_left + window_right + 1`` and ``block = max(16, min(64, width))``, the
``nb = ceil(S / block)`` query blocks each attend one key chunk of ``chunk = block + width - 1``
keys starting at key ``n * block - window_left``. Blocks and chunks are read with ``Gather``
through in-graph index matrices ([nb, block] and [nb, chunk]); indices outside [0, S) are
clamped for the read and excluded by the mask, so no padded copy of K/V is built. Logits are
[B, H, nb, block, chunk], which is O(S * window).
"""

from __future__ import annotations

import onnx

from seo_export.export.functions.common import (
    CONSTANTS,
    LOCAL_WINDOW,
    adds_bias,
    bias_gather,
    bias_prelude,
    cast_output,
    check_opset,
    header,
    masked_softmax,
    parse,
    presence_of,
)

DOC = (
    "Local-window attention: query i attends keys j with -window_left <= j - i <= window_right "
    "(and key_mask[b, j] when given), logits q.k * scale + rel_bias[h, clamp(j - i, -K, K) + K]. "
    "Computed in float32 over banded blocks (O(S * window)); rows with no admissible key are zeros."
)

_LAYOUT = """
    wl = Constant <value_int: int = @window_left> ()
    wr = Constant <value_int: int = @window_right> ()
    c_i16 = Constant <value: tensor = int64 {16}> ()
    c_i64 = Constant <value: tensor = int64 {64}> ()
    w_sum = Add (wl, wr)
    width = Add (w_sum, c_i1)
    w_m1 = Sub (width, c_i1)
    b_min = Min (c_i64, width)
    block = Max (c_i16, b_min)
    chunk = Add (block, w_m1)
    s_pb = Add (s_len, block)
    s_pb1 = Sub (s_pb, c_i1)
    n_blocks = Div (s_pb1, block)
    s_last = Sub (s_len, c_i1)
    r_blk = Range (c_i0, n_blocks, c_i1)
    r_row = Range (c_i0, block, c_i1)
    r_col = Range (c_i0, chunk, c_i1)
    blk_start = Mul (r_blk, block)
    blk_start2 = Unsqueeze (blk_start, c_ax1)
    row_1b = Unsqueeze (r_row, c_ax0)
    row_b1 = Unsqueeze (r_row, c_ax1)
    col_1c = Unsqueeze (r_col, c_ax0)
    q_pos = Add (blk_start2, row_1b)
    q_idx = Min (q_pos, s_last)
    k_start = Sub (blk_start2, wl)
    k_pos = Add (k_start, col_1c)
    k_lo = Max (k_pos, c_i0)
    k_idx = Min (k_lo, s_last)
    k_ge = GreaterOrEqual (k_pos, c_i0)
    k_lt = Less (k_pos, s_len)
    k_in = And (k_ge, k_lt)
    dist = Sub (col_1c, row_b1)
    band_ge = GreaterOrEqual (dist, c_i0)
    band_le = LessOrEqual (dist, w_m1)
    band = And (band_ge, band_le)
"""

_LOGITS = """
    q_blk = Gather <axis: int = 2> (qf, q_idx)
    k_chk = Gather <axis: int = 2> (kf, k_idx)
    v_chk = Gather <axis: int = 2> (vf, k_idx)
    k_chk_t = Transpose <perm: ints = [0, 1, 2, 4, 3]> (k_chk)
    qk = MatMul (q_blk, k_chk_t)
    logits = Mul (qk, c_scale)
"""

_WITH_BIAS = (
    bias_prelude()
    + """
    rel = Sub (dist, wl)
"""
    + bias_gather("lb", "rel", "bias_hbc")
    + """
    bias_5d = Unsqueeze (bias_hbc, c_ax02)
"""
)

_WITH_MASK = """
    m_chk = Gather <axis: int = 1> (key_mask, k_idx)
    key_ok = And (m_chk, k_in)
    key_ok5 = Unsqueeze (key_ok, c_ax13)
    allowed = And (band, key_ok5)
"""

_NO_MASK = """
    key_ok3 = Unsqueeze (k_in, c_ax1)
    allowed = And (band, key_ok3)
"""

_OUTPUT = """
    out_num = MatMul (expw, v_chk)
    out_blk = Div (out_num, expw_den)
    out_shape = Concat <axis: int = 0> (bh_1d, c_m1, d_1d)
    out_pad = Reshape (out_blk, out_shape)
    out_sl = Slice (out_pad, c_ax0, s_1d, c_ax2)
    q_shape = Shape (q)
    out_f = Reshape (out_sl, q_shape)
"""


def build(overload: str, opset: int) -> onnx.FunctionProto:
    has_mask, _ = presence_of(overload)
    has_bias = adds_bias(overload)
    opset = check_opset(opset)
    body = (
        CONSTANTS
        + """
    c_ax02 = Constant <value: tensor = int64[2] {0, 2}> ()
    c_ax13 = Constant <value: tensor = int64[2] {1, 3}> ()
"""
        + _LAYOUT
        + _LOGITS
        + (_WITH_BIAS if has_bias else "")
        + (_WITH_MASK if has_mask else _NO_MASK)
        # Normalised after P @ V: divides [.., block, D] rather than [.., block, chunk].
        + masked_softmax("sm", "logits", "allowed", "expw", bias="bias_5d" if has_bias else None, normalize=False)
        + _OUTPUT
        + cast_output(overload)
    )
    return parse(header(LOCAL_WINDOW, opset) + "{" + body + "}\n", overload, DOC)
