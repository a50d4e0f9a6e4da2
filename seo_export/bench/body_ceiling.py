"""Timing-only variants of the local-window body that leave out work a correct body needs.

They bound what the body's structure (standard ONNX ops on ONNX Runtime's CPU provider) could
reach: if even a body without its key-range pass and its trailing trim stays near the goal, no
rearrangement of the correct body will pass it. Their outputs are wrong near the sequence ends
(the bench prints how far), and the block gathers hold only for S a multiple of 64 with the
window 64 / 64 (the bench's default), where a key chunk is three whole blocks.
"""

from __future__ import annotations

import types

from seo_export.export.functions import local_window

_NO_KEY_RANGE = ("_SOFTMAX", "    sel = Add (sel_b, key_neg)\n", "    sel = Identity (sel_b)\n")
_NO_TRIM = ("_OUT_ROWS", """    out_sl = Slice (out_pad, c_ax0, s_1d, c_ax2)
    q_shape = Shape (q)
    out = Reshape (out_sl, q_shape)
""", "    out = Identity (out_pad)\n")
# Keys and values read as whole 64-row blocks (previous, own, next) instead of row by row.
_BLOCK_GATHERS = ("_LOGITS", """    k_chk = Gather <axis: int = 2> (kf, k_idx)
    v_chk = Gather <axis: int = 2> (vf, k_idx)
""", """    d_len = Squeeze (d_1d)
    blk_d = Mul (block, d_len)
    blk_d1 = Unsqueeze (blk_d, c_ax0)
    kb_shape = Concat <axis: int = 0> (bh_1d, c_m1, blk_d1)
    k_blocks = Reshape (kf, kb_shape)
    v_blocks = Reshape (vf, kb_shape)
    c_i3 = Constant <value: tensor = int64 {3}> ()
    r3 = Range (c_i0, c_i3, c_i1)
    r3_row = Unsqueeze (r3, c_ax0)
    blk_col = Unsqueeze (r_blk, c_ax1)
    nb_last = Sub (n_blocks, c_i1)
    bidx0 = Add (blk_col, r3_row)
    bidx1 = Sub (bidx0, c_i1)
    bidx2 = Max (bidx1, c_i0)
    bidx = Min (bidx2, nb_last)
    k_chk3 = Gather <axis: int = 2> (k_blocks, bidx)
    v_chk3 = Gather <axis: int = 2> (v_blocks, bidx)
    nb_1d = Unsqueeze (n_blocks, c_ax0)
    chk_shape = Concat <axis: int = 0> (bh_1d, nb_1d, c_m1, d_1d)
    k_chk = Reshape (k_chk3, chk_shape)
    v_chk = Reshape (v_chk3, chk_shape)
""")

CEILINGS = {
    "ceiling: no key-range pass": (_NO_KEY_RANGE,),
    "ceiling: no key-range pass, no trim": (_NO_KEY_RANGE, _NO_TRIM),
    "ceiling: no key-range pass, no trim, block gathers": (_NO_KEY_RANGE, _NO_TRIM, _BLOCK_GATHERS),
}
#: The block gathers' only valid shape (see the module docstring).
BLOCK = 64
WINDOW = 128


def variant_build(edits):
    """``local_window.build`` with ``edits`` ((fragment name, old text, new text), ...) applied to its
    fragments; a text no longer in the body is an error, so a changed body cannot silently pass."""
    fragments = dict(vars(local_window))
    for name, old, new in edits:
        if old not in fragments[name]:
            raise ValueError(f"the body's {name} no longer holds the text this ceiling removes: update body_ceiling")
        fragments[name] = fragments[name].replace(old, new)
    build = local_window.build
    return types.FunctionType(build.__code__, fragments, build.__name__, build.__defaults__, build.__closure__)


def ceiling_builds() -> dict:
    return {name: variant_build(edits) for name, edits in CEILINGS.items()}


def check_shape(seqs: list[int], window: int, mask: bool) -> None:
    if window != WINDOW or mask or any(s % BLOCK for s in seqs):
        raise SystemExit(f"--ceiling times block gathers valid only for window {WINDOW}, no key mask and lengths "
                         f"a multiple of {BLOCK}: drop --window/--mask or pick such lengths")
