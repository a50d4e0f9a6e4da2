"""Portable body of ``seo.LandmarkAttention``: Nystrom attention in O(S * L).

Mirrors ``seo_export.ops.landmark.landmark_attention_reference``. The sequence is padded to
``L * ceil(S / L)`` and cut into L segments; landmarks are masked segment means of Q and K
(empty segments are excluded from every softmax). A1 [S, L], A2 [L, L] and A3 [L, S] are
masked softmaxes (relative bias taken at each landmark's position, the centre of its segment
rounded down), pinv(A2) is the Newton-Schulz iteration run ``pinv_iterations`` times in a
``Loop`` from the per-(b, h) scaled transpose, and the output is A1 @ (Z @ (A3 @ V)).
"""

from __future__ import annotations

import onnx

from seo_export.export.functions.common import (
    CONSTANTS,
    LANDMARK,
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
    "Landmark (Nystrom) attention with num_landmarks segment-mean landmarks: "
    "A1 @ (pinv(A2) @ (A3 @ V)), masked softmaxes and Newton-Schulz pseudo-inverse "
    "(pinv_iterations steps) in float32, O(S * L); rows with no admissible key are zeros."
)

_LAYOUT = """
    n_land = Constant <value_int: int = @num_landmarks> ()
    n_iter = Constant <value_int: int = @pinv_iterations> ()
    c_i0_1d = Constant <value: tensor = int64[1] {0}> ()
    c_pad_head = Constant <value: tensor = int64[6] {0, 0, 0, 0, 0, 0}> ()
    c_f7 = Constant <value: tensor = float {7.0}> ()
    c_f13 = Constant <value: tensor = float {13.0}> ()
    c_f15 = Constant <value: tensor = float {15.0}> ()
    c_f025 = Constant <value: tensor = float {0.25}> ()
    l_m1 = Sub (n_land, c_i1)
    s_pl = Add (s_len, l_m1)
    seg = Div (s_pl, n_land)
    padded = Mul (seg, n_land)
    pad_len = Sub (padded, s_len)
    l_1d = Unsqueeze (n_land, c_ax0)
    seg_1d = Unsqueeze (seg, c_ax0)
    pad_1d = Unsqueeze (pad_len, c_ax0)
    p_all = Range (c_i0, padded, c_i1)
    p_in = Less (p_all, s_len)
    pos = Range (c_i0, s_len, c_i1)
    l_rng = Range (c_i0, n_land, c_i1)
    seg_start = Mul (l_rng, seg)
    seg_rem = Sub (s_len, seg_start)
    seg_hi = Min (seg_rem, seg)
    seg_n = Max (seg_hi, c_i0)
    seg_n1 = Add (seg_n, c_i1)
    seg_half = Div (seg_n1, c_i2)
    seg_off = Sub (seg_half, c_i1)
    centre = Add (seg_start, seg_off)
"""

_WITH_MASK = """
    s_last = Sub (s_len, c_i1)
    p_idx = Min (p_all, s_last)
    m_all = Gather <axis: int = 1> (key_mask, p_idx)
    tok = And (m_all, p_in)
"""

_NO_MASK = """
    tok = Unsqueeze (p_in, c_ax0)
"""

_LANDMARKS = """
    seg_shape = Concat <axis: int = 0> (c_m1, l_1d, seg_1d)
    seg_mask = Reshape (tok, seg_shape)
    seg_maskf = Cast <to: int = 1> (seg_mask)
    seg_cnt = ReduceSum <keepdims: int = 1> (seg_maskf, c_axm1)
    valid3 = Greater (seg_cnt, c_f0)
    valid = Squeeze (valid3, c_axm1)
    seg_cntc = Max (seg_cnt, c_f1)
    seg_w = Div (seg_maskf, seg_cntc)
    seg_w5 = Unsqueeze (seg_w, c_ax13)
    pads = Concat <axis: int = 0> (c_pad_head, pad_1d, c_i0_1d)
    x5_shape = Concat <axis: int = 0> (bh_1d, l_1d, seg_1d, d_1d)
    q_pad = Pad (qf, pads)
    q_seg = Reshape (q_pad, x5_shape)
    q_land5 = MatMul (seg_w5, q_seg)
    q_land = Squeeze (q_land5, c_ax3)
    k_pad = Pad (kf, pads)
    k_seg = Reshape (k_pad, x5_shape)
    k_land5 = MatMul (seg_w5, k_seg)
    k_land = Squeeze (k_land5, c_ax3)
    k_land_t = Transpose <perm: ints = [0, 1, 3, 2]> (k_land)
    k_t = Transpose <perm: ints = [0, 1, 3, 2]> (kf)
    qk1 = MatMul (qf, k_land_t)
    l1 = Mul (qk1, c_scale)
    qk2 = MatMul (q_land, k_land_t)
    l2 = Mul (qk2, c_scale)
    qk3 = MatMul (q_land, k_t)
    l3 = Mul (qk3, c_scale)
"""

_WITH_BIAS = (
    bias_prelude()
    + """
    centre_row = Unsqueeze (centre, c_ax0)
    centre_col = Unsqueeze (centre, c_ax1)
    pos_row = Unsqueeze (pos, c_ax0)
    pos_col = Unsqueeze (pos, c_ax1)
    rel1 = Sub (centre_row, pos_col)
    rel2 = Sub (centre_row, centre_col)
    rel3 = Sub (pos_row, centre_col)
"""
    + bias_gather("b1", "rel1", "bias1")
    + bias_gather("b2", "rel2", "bias2")
    + bias_gather("b3", "rel3", "bias3")
    + """
    bias1_4 = Unsqueeze (bias1, c_ax0)
    bias2_4 = Unsqueeze (bias2, c_ax0)
    bias3_4 = Unsqueeze (bias3, c_ax0)
"""
)

_ALLOWED = """
    valid_cols = Unsqueeze (valid, c_ax12)
    valid_rows = Unsqueeze (valid, c_ax13)
    allowed2 = And (valid_rows, valid_cols)
    tok_s = Slice (tok, c_ax0, s_1d, c_ax1)
    tok_cols = Unsqueeze (tok_s, c_ax12)
    allowed3 = And (valid_rows, tok_cols)
"""

# Newton-Schulz: z <- 0.25 z (13 I - az (15 I - az (7 I - az))), az = a z, from
# z0 = a^T / (max column abs-sum * max row abs-sum) per (b, h), 0 where that product is 0.
_PINV = """
    a2_abs = Abs (a2)
    a2_colsum = ReduceSum <keepdims: int = 0> (a2_abs, c_axm2)
    a2_col = ReduceMax <keepdims: int = 1> (a2_colsum, c_axm1)
    a2_rowsum = ReduceSum <keepdims: int = 0> (a2_abs, c_axm1)
    a2_row = ReduceMax <keepdims: int = 1> (a2_rowsum, c_axm1)
    norm3 = Mul (a2_col, a2_row)
    norm = Unsqueeze (norm3, c_axm1)
    norm_pos = Greater (norm, c_f0)
    norm_safe = Where (norm_pos, norm, c_f1)
    norm_inv = Div (c_f1, norm_safe)
    z_scale = Where (norm_pos, norm_inv, c_f0)
    a2_t = Transpose <perm: ints = [0, 1, 3, 2]> (a2)
    z0 = Mul (a2_t, z_scale)
    ll_shape = Concat <axis: int = 0> (l_1d, l_1d)
    ll_zero = ConstantOfShape (ll_shape)
    eye = EyeLike (ll_zero)
    eye7 = Mul (eye, c_f7)
    eye13 = Mul (eye, c_f13)
    eye15 = Mul (eye, c_f15)
    z = Loop (n_iter, c_true, z0) <body = pinv_step (int64 it, bool cond_in, float z_in) => (bool cond_out, float z_out) {
        cond_out = Identity (cond_in)
        az = MatMul (a2, z_in)
        t7 = Sub (eye7, az)
        t7a = MatMul (az, t7)
        t15 = Sub (eye15, t7a)
        t15a = MatMul (az, t15)
        t13 = Sub (eye13, t15a)
        z_q = Mul (c_f025, z_in)
        z_out = MatMul (z_q, t13)
    }>
"""

# ONNX shape inference never gives a Loop's carried outputs a shape, so restate z's rank.
_OUTPUT = """
    a2_shape = Shape (a2)
    z_r = Reshape (z, a2_shape)
    a3v = MatMul (a3, vf)
    za3v = MatMul (z_r, a3v)
    out_mm = MatMul (a1, za3v)
    q_shape = Shape (q)
    out_f = Reshape (out_mm, q_shape)
"""


def build(overload: str, opset: int) -> onnx.FunctionProto:
    has_mask, _ = presence_of(overload)
    has_bias = adds_bias(overload)
    opset = check_opset(opset)
    body = (
        CONSTANTS
        + """
    c_ax12 = Constant <value: tensor = int64[2] {1, 2}> ()
    c_ax13 = Constant <value: tensor = int64[2] {1, 3}> ()
"""
        + _LAYOUT
        + (_WITH_MASK if has_mask else _NO_MASK)
        + _LANDMARKS
        + (_WITH_BIAS if has_bias else "")
        + _ALLOWED
        + masked_softmax("sm1", "l1", "valid_cols", "a1", bias="bias1_4" if has_bias else None)
        + masked_softmax("sm2", "l2", "allowed2", "a2", bias="bias2_4" if has_bias else None)
        + masked_softmax("sm3", "l3", "allowed3", "a3", bias="bias3_4" if has_bias else None)
        + _PINV
        + _OUTPUT
        + cast_output(overload)
    )
    return parse(header(LANDMARK, opset) + "{" + body + "}\n", overload, DOC)
