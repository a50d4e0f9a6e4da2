"""Reference local (sliding-window) attention in O(S * window) time and memory.

Query i sees keys j with -window_left <= j - i <= window_right. Queries are cut into
blocks of ``block`` rows; each block attends one overlapping key chunk of
``block + window - 1`` keys, so no S x S matrix is ever built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seo_export.ops.softmax import (
    default_scale,
    masked_softmax,
    rel_bias_max_distance,
    relative_bucket,
    relative_positions,
)


def local_block_size(window_left: int, window_right: int) -> int:
    """Query rows per block: about one window, kept between 16 and 64 rows."""
    return max(16, min(64, window_left + window_right + 1))


def _band(block: int, chunk: int, window_left: int, device) -> torch.Tensor:
    """[block, chunk] relative distance j - i for query row a and chunk column c."""
    a = torch.arange(block, device=device)[:, None]
    c = torch.arange(chunk, device=device)[None, :]
    return c - a - window_left


def local_window_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window_left: int,
    window_right: int,
    key_padding_mask: torch.Tensor | None = None,
    rel_bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    batch, heads, seq, dim = q.shape
    scale = default_scale(dim, scale)
    width = window_left + window_right + 1
    block = local_block_size(window_left, window_right)
    n_blocks = -(-seq // block)
    padded = n_blocks * block
    chunk = block + width - 1
    work = torch.promote_types(q.dtype, torch.float32)

    qb = F.pad(q.to(work), (0, 0, 0, padded - seq)).view(batch, heads, n_blocks, block, dim)
    key_pad = (0, 0, window_left, padded - seq + window_right)
    # unfold gives [B, H, n_blocks, D, chunk]: chunk n starts at key n*block - window_left.
    kc = F.pad(k.to(work), key_pad).unfold(2, chunk, block)
    vc = F.pad(v.to(work), key_pad).unfold(2, chunk, block)

    if key_padding_mask is None:
        key_padding_mask = torch.ones(batch, seq, dtype=torch.bool, device=q.device)
    mask_c = F.pad(key_padding_mask.bool(), (window_left, padded - seq + window_right), value=False)
    mask_c = mask_c.unfold(1, chunk, block)  # [B, n_blocks, chunk]

    rel = _band(block, chunk, window_left, q.device)
    allowed = ((rel >= -window_left) & (rel <= window_right))[None, None, None] & mask_c[:, None, :, None, :]

    logits = torch.matmul(qb, kc) * scale
    if rel_bias is not None:
        bucket = relative_bucket(rel, rel_bias_max_distance(rel_bias))
        logits = logits + rel_bias.to(work)[:, bucket][None, :, None]
    probs = masked_softmax(logits, allowed)
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p, training=True)
    out = torch.matmul(probs, vc.transpose(-1, -2))
    return out.reshape(batch, heads, padded, dim)[:, :, :seq].to(q.dtype)


def local_window_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    window_left: int,
    window_right: int,
    key_padding_mask: torch.Tensor | None = None,
    rel_bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """The dense [B, H, S, S] probability matrix the local op applies (for inspection only)."""
    seq = q.shape[2]
    scale = default_scale(q.shape[-1], scale)
    rel = relative_positions(seq, seq, q.device)
    allowed = (rel >= -window_left) & (rel <= window_right)
    if key_padding_mask is not None:
        allowed = allowed[None, None] & key_padding_mask.bool()[:, None, None, :]
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if rel_bias is not None:
        logits = logits + rel_bias.float()[:, relative_bucket(rel, rel_bias_max_distance(rel_bias))]
    return masked_softmax(logits, allowed)
