"""Encodings added to the token embeddings: sinusoidal (computed) and learned (a table)."""

from __future__ import annotations

import math

import torch
from torch import nn

from seo_export.models.positional.base import PositionalEncodingBase


def sinusoid_table(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """[S, d_model] table of Vaswani et al.: sin on even channels, cos on odd ones."""
    half = torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)
    inv_freq = torch.exp(half * (-math.log(10000.0) / d_model))
    angles = positions.float()[:, None] * inv_freq[None, :]
    table = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)
    return table[:, :d_model]


class PositionalEncoding(PositionalEncodingBase):
    """Sinusoidal encoding; computed from positions, so any length works (max_len is advisory)."""

    def __init__(self, d_model: int, max_len: int = 5000, **_: object):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        return x + sinusoid_table(positions, self.d_model).to(x.dtype)


class LearnedPositionalEncoding(PositionalEncodingBase):
    """A learned [max_len, d_model] table; longer inputs are an error."""

    def __init__(self, d_model: int, max_len: int = 5000, **_: object):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = x.shape[1]
        if seq_len > self.max_len:
            raise ValueError(
                f"sequence length {seq_len} exceeds the learned positional encoding's max_len {self.max_len}; "
                "truncate the input or use a model with a larger positional_encoding_max_len"
            )
        return x + self.embedding.weight[:seq_len].to(x.dtype)
