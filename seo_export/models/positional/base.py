"""What a positional encoding hands to the model: additive embeddings and per-attention context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PositionContext:
    """Computed once per forward and passed to every attention layer."""

    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin: [S, head_dim]
    rel_bias: torch.Tensor | None = None  # [heads, 2K+1], added to attention logits


class PositionalEncodingBase(nn.Module):
    """Absolute encodings override ``forward``; relative ones override ``context``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def context(self, seq_len: int, device: torch.device) -> PositionContext:
        return PositionContext()
