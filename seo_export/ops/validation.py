"""Shape and dtype checks shared by the op entry points."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_attention_inputs(q, k, v, key_padding_mask=None, rel_bias=None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be [batch, heads, seq, head_dim], got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must have one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    batch, heads, seq, _ = q.shape
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (batch, seq):
        raise ValueError(f"key_padding_mask must be [batch, seq] = {(batch, seq)}, got {tuple(key_padding_mask.shape)}")
    if rel_bias is not None and (rel_bias.dim() != 2 or rel_bias.shape[0] != heads or rel_bias.shape[1] % 2 != 1):
        raise ValueError(f"rel_bias must be [heads, 2K+1] with heads = {heads}, got {tuple(rel_bias.shape)}")
