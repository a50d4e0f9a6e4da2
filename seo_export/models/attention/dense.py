"""Dense attention: standard multi-head and Shaw relative-position attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seo_export.models.attention.base import AttentionBase
from seo_export.ops.softmax import relative_bucket, relative_positions, softmax_allowed, zero_empty_rows


def dense_allowed(seq: int, key_padding_mask, causal: bool, device) -> torch.Tensor:
    """[B or 1, 1, S, S] boolean: which keys each query may attend."""
    allowed = torch.ones(1, 1, seq, seq, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed & (relative_positions(seq, seq, device) <= 0)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]
    return allowed


def bias_logits(rel_bias: torch.Tensor | None, seq: int, device) -> torch.Tensor | float:
    if rel_bias is None:
        return 0.0
    k = (rel_bias.shape[-1] - 1) // 2
    return rel_bias[:, relative_bucket(relative_positions(seq, seq, device), k)][None]


class MultiHeadAttention(AttentionBase):
    """Scaled dot-product attention, scale 1 / sqrt(head_dim).

    ``fused_attention`` (set by the exporter for opset >= 23) computes the same thing with
    ``F.scaled_dot_product_attention``, which torch.onnx writes as ONNX's ``Attention`` op.
    """

    fused_attention = False

    def logits(self, q, k, query_plain) -> torch.Tensor:
        return torch.matmul(q, k.transpose(-1, -2)) * self.scale

    def mix(self, probs, v) -> torch.Tensor:
        return torch.matmul(probs, v)

    def attend(self, q, k, v, key_padding_mask, rel_bias, need_weights, query_plain):
        seq = q.shape[2]
        if self.fused_attention and rel_bias is None and not need_weights and type(self) is MultiHeadAttention:
            return self._fused(q, k, v, dense_allowed(seq, key_padding_mask, self.causal, q.device)), None
        logits = self.logits(q, k, query_plain) + bias_logits(rel_bias, seq, q.device)
        allowed = dense_allowed(seq, key_padding_mask, self.causal, q.device)
        probs = softmax_allowed(logits, allowed)
        # Queries with no admissible key are zeroed on the [.., S, D] output, not on [.., S, S].
        out = zero_empty_rows(self.mix(F.dropout(probs, self.active_dropout, self.training), v), allowed)
        return out, (zero_empty_rows(probs, allowed) if need_weights else None)


    def _fused(self, q, k, v, allowed):
        # ONNX Runtime wants the mask's query axis spelled out, not broadcast.
        allowed = allowed.expand(q.shape[0], 1, q.shape[2], q.shape[2])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.active_dropout)
        return zero_empty_rows(out, allowed)  # SDPA gives NaN rows there; Where selects zeros


class AttentionWithRelativePositions(MultiHeadAttention):
    """Shaw et al.: learned key/value embeddings a^K, a^V [2K+1, head_dim] shared across heads.

    q . a^K is computed as [.., S, 2K+1] and gathered; the value term sums the
    probabilities per relative bucket first, so no [S, S, head_dim] tensor exists.
    With rotary encoding only the content term q . k is rotated: q . a^K uses the
    unrotated query, since a^K is already indexed by relative distance (rotating q
    alone would tie that term to absolute positions).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, causal: bool = False,
                 max_relative_position: int = 32):
        super().__init__(d_model, num_heads, dropout, causal)
        if max_relative_position <= 0:
            raise ValueError(f"max_relative_position must be > 0, got {max_relative_position}")
        self.max_relative_position = max_relative_position
        width = 2 * max_relative_position + 1
        self.rel_key = nn.Parameter(torch.zeros(width, self.head_dim))
        self.rel_value = nn.Parameter(torch.zeros(width, self.head_dim))

    def reset_relative_tables(self, std: float) -> None:
        nn.init.normal_(self.rel_key, std=std)
        nn.init.normal_(self.rel_value, std=std)

    def _buckets(self, seq: int, device) -> torch.Tensor:
        return relative_bucket(relative_positions(seq, seq, device), self.max_relative_position)

    def logits(self, q, k, query_plain) -> torch.Tensor:
        batch, heads, seq, _ = q.shape
        q_rel = torch.matmul(query_plain, self.rel_key.to(q.dtype).t())  # [B, H, S, 2K+1]
        index = self._buckets(seq, q.device).expand(batch, heads, seq, seq)
        return (torch.matmul(q, k.transpose(-1, -2)) + torch.gather(q_rel, -1, index)) * self.scale

    def mix(self, probs, v) -> torch.Tensor:
        per_bucket = bucket_sums(probs.float(), self.max_relative_position)
        return torch.matmul(probs, v) + torch.matmul(per_bucket, self.rel_value.float()).to(probs.dtype)


def bucket_sums(probs: torch.Tensor, k: int) -> torch.Tensor:
    """[.., S, S] probabilities -> [.., S, 2K+1] sums per clipped relative distance.

    Interior buckets (|j - i| < K) are single diagonals, read with a gather whose
    out-of-range entries are zeroed; the two clipped end buckets are masked row sums. No
    scatter (ScatterElements-add has no FP16 kernel in ONNX Runtime and no TensorRT layer)
    and no cumsum (ONNX Runtime's CumSum is ~3x slower than the whole attention around it).
    """
    seq = probs.shape[-1]
    rel = relative_positions(seq, seq, probs.device)
    below = (probs * (rel <= -k).to(probs.dtype)).sum(-1, keepdim=True)
    above = (probs * (rel >= k).to(probs.dtype)).sum(-1, keepdim=True)
    columns = torch.arange(seq, device=probs.device)[:, None] + torch.arange(1 - k, k, device=probs.device)[None, :]
    inside = (columns >= 0) & (columns < seq)  # [S, 2K-1]: key i + d exists
    index = columns.clamp(0, seq - 1).expand(*probs.shape[:-1], 2 * k - 1)
    diagonal = torch.where(inside, torch.gather(probs, -1, index), torch.zeros((), dtype=probs.dtype, device=probs.device))
    return torch.cat([below, diagonal, above], dim=-1)
