"""Portable body of ``seo.LocalWindowAttention``: banded blocks, O(S * window), no S x S matrix.

Mirrors ``seo_export.ops.local_window.local_window_attention_reference``. With
``width = window_left + window_right + 1`` and ``block = max(16, min(64, width))``, the
``nb = ceil(S / block)`` query blocks each attend one key chunk of ``chunk = block + width - 1``
keys starting at key ``n * block - window_left``, read with ``Gather`` through in-graph index
matrices ([nb, block] and [nb, chunk]). Logits are [B, H, nb, block, chunk], O(S * window).

The logits are the costly tensor, so they are passed over as few times as possible: the band
and the relative bias are one [H, block, chunk] table, keys outside [0, S) (read through a
clamped index) and masked keys one [B, 1, nb, 1, chunk] table of 0 / -inf. Before ONNX
``Softmax``, entries below the row max - 40 are raised to it: ONNX Runtime's exponential is ~3.5x
slower where it underflows to denormals (-inf included), and exp(-40) = 4e-18 is invisible next
to the row max's 1 in float32. A row with no admissible key (all -inf, floored to the lowest float,
so uniform and finite out of Softmax) is found from a running count of real keys and multiplied
by zero.
"""

from __future__ import annotations

import onnx

from seo_export.export.functions.common import (
    CONSTANTS,
    LOCAL_WINDOW,
    adds_bias,
    bias_gather,
    bias_prelude,
    check_opset,
    header,
    parse,
    presence_of,
    type_source,
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
    k_ge = GreaterOrEqual (k_pos, c_i0)
    k_lt = Less (k_pos, s_len)
    k_in = And (k_ge, k_lt)
    k_lo = Max (k_pos, c_i0)
    k_idx = Min (k_lo, s_last)
    dist = Sub (col_1c, row_b1)
    band_ge = GreaterOrEqual (dist, c_i0)
    band_le = LessOrEqual (dist, w_m1)
    band = And (band_ge, band_le)
    band_neg = Where (band, c_f0, c_ninf)
"""

# Keys outside [0, S) are read from a clamped index and masked, with the key mask, by one
# [B, 1, nb, 1, chunk] table of 0 / -inf (key_ok), so no copy of q or k is widened or padded.
_KEY_OK_NO_MASK = """
    key_ok = Unsqueeze (k_in, c_ax1)
"""

# Rows whose window holds no admissible key (all -inf, floored to the lowest float, so uniform and
# finite out of Softmax) are found from a running count of real keys (O(B * S)) and multiplied
# by 0 (a Where with a [B, 1, S, 1] condition is ~3x slower in ONNX Runtime).
_KEY_OK_MASK = """
    mask_at = Gather <axis: int = 1> (key_mask, k_idx)
    k_in_b = Unsqueeze (k_in, c_ax0)
    key_in = And (mask_at, k_in_b)
    key_ok = Unsqueeze (key_in, c_ax13)
    mask_i = Cast <to: int = 7> (key_mask)
    mask_cs = CumSum (mask_i, c_i1)
    b_1d = Shape <start: int = 0, end: int = 1> (q)
    zero_shape = Concat <axis: int = 0> (b_1d, c_ax1)
    zero_col = ConstantOfShape <value: tensor = int64[1] {0}> (zero_shape)
    mask_cs0 = Concat <axis: int = 1> (zero_col, mask_cs)
    r_seq = Reshape (q_idx, c_m1)
    win_hi0 = Add (r_seq, wr)
    win_hi1 = Min (win_hi0, s_last)
    win_hi = Add (win_hi1, c_i1)
    win_lo0 = Sub (r_seq, wl)
    win_lo = Max (win_lo0, c_i0)
    cnt_hi = Gather <axis: int = 1> (mask_cs0, win_hi)
    cnt_lo = Gather <axis: int = 1> (mask_cs0, win_lo)
    cnt = Sub (cnt_hi, cnt_lo)
    row_any = Greater (cnt, c_i0)
    row_ok = Unsqueeze (row_any, c_ax13)
"""

# q is scaled right before the MatMul, where ONNX Runtime folds the Mul into it.
_LOGITS = """
    key_neg = Where (key_ok, c_f0, c_ninf)
    q_blk = Gather <axis: int = 2> (qf, q_idx)
    q_sc = Mul (q_blk, c_scale)
    k_chk = Gather <axis: int = 2> (kf, k_idx)
    v_chk = Gather <axis: int = 2> (vf, k_idx)
    k_chk_t = Transpose <perm: ints = [0, 1, 2, 4, 3]> (k_chk)
    logits = MatMul (q_sc, k_chk_t)
"""

_WITH_BIAS = (
    bias_prelude()
    + """
    rel = Sub (dist, wl)
"""
    + bias_gather("lb", "rel", "bias_hbc")
    + """
    bias_band = Add (bias_hbc, band_neg)
    table = Unsqueeze (bias_band, c_ax02)
"""
)

_NO_BIAS = """
    table = Identity (band_neg)
"""

# The floor (module docstring) comes from the row max without keepdims: ONNX Runtime's Sub on a
# [..., 1] tensor is ~30x slower than on the same values without the trailing 1. A row with no
# admissible key (row max -inf) is floored to the lowest float: equal, finite values for Softmax.
_SOFTMAX = """
    sel_b = Add (logits, table)
    sel = Add (sel_b, key_neg)
    row_max = ReduceMax <keepdims: int = 0> (sel, c_axm1)
    c_floor = Constant <value: tensor = float {40.0}> ()
    c_lowest = Constant <value: tensor = float {-3.4028234663852886e38}> ()
    floor0 = Sub (row_max, c_floor)
    floor_fin = Max (floor0, c_lowest)
    floor = Unsqueeze (floor_fin, c_axm1)
    sel_fl = Max (sel, floor)
    probs = Softmax <axis: int = -1> (sel_fl)
    out_blk_f = MatMul (probs, v_chk)
"""

# The cast back to the inputs' type comes before the slice: for float32 ONNX Runtime drops it (not
# where it would produce a graph output), and an FP16 graph slices half the bytes. Reshaped last
# so shape inference gives the output q's shape.
_OUT = """
    out_shape = Concat <axis: int = 0> (bh_1d, c_m1, d_1d)
    out_pad_f = Reshape (out_blk_f, out_shape)
"""

_OUT_NO_MASK = """
    out_pad = CastLike (out_pad_f, {like})
"""

_OUT_MASK = """
    keep = Cast <to: int = 1> (row_ok)
    out_kept = Mul (out_pad_f, keep)
    out_pad = CastLike (out_kept, {like})
"""

_OUT_ROWS = """
    out_sl = Slice (out_pad, c_ax0, s_1d, c_ax2)
    q_shape = Shape (q)
    out = Reshape (out_sl, q_shape)
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
        + (_KEY_OK_MASK if has_mask else _KEY_OK_NO_MASK)
        + _LOGITS
        + (_WITH_BIAS if has_bias else _NO_BIAS)
        + _SOFTMAX
        + _OUT
        + (_OUT_MASK if has_mask else _OUT_NO_MASK).format(like=type_source(overload))
        + _OUT_ROWS
    )
    return parse(header(LOCAL_WINDOW, opset) + "{" + body + "}\n", overload, DOC)
