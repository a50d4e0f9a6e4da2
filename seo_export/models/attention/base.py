"""The contract every attention kind follows: project, rotate, attend, merge."""

from __future__ import annotations

import torch
from torch import nn

from seo_export.models.positional import PositionContext, apply_rotary


class AttentionBase(nn.Module):
    """Subclasses implement ``attend`` on [B, H, S, D] tensors.

    ``q`` and ``k`` arrive rotated when the encoding is rotary; ``query_plain`` is the
    unrotated query, for terms that are already relative (Shaw's q . a^K).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        if num_heads <= 0 or d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.scale = self.head_dim ** -0.5
        self.dropout_p = dropout
        self.causal = causal
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.value_conv: nn.Conv2d | None = None

    def add_value_conv(self, kernel: int) -> None:
        """Nystromformer's depthwise convolution over V along the sequence, per head, added to the
        attention output: over every position, padding included, as transformers computes it."""
        self.value_conv = nn.Conv2d(self.num_heads, self.num_heads, (kernel, 1), padding=(kernel // 2, 0),
                                    bias=False, groups=self.num_heads)

    @property
    def active_dropout(self) -> float:
        return self.dropout_p if self.training else 0.0

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position: PositionContext | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, S, d_model], key_padding_mask [B, S] bool (True = token)."""
        position = position or PositionContext()
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        query_plain = q
        if position.rotary is not None:
            cos, sin = position.rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out, weights = self.attend(q, k, v, key_padding_mask, position.rel_bias, output_attentions, query_plain)
        if self.value_conv is not None:
            out = out + self.value_conv(v)
        batch, _, seq, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, seq, self.d_model)
        return self.out_proj(out), weights

    def attend(self, q, k, v, key_padding_mask, rel_bias, need_weights, query_plain):
        raise NotImplementedError
