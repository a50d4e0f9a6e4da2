"""Encodings that act inside attention: a relative-position bias and rotary embeddings."""

from __future__ import annotations

import torch
from torch import nn

from seo_export.models.positional.base import PositionalEncodingBase, PositionContext


class RelativePositionalEncoding(PositionalEncodingBase):
    """A learned per-head scalar bias b[h, clip(j - i, -K, K)], shared across layers."""

    def __init__(self, d_model: int, num_heads: int = 1, max_relative_position: int = 32, **_: object):
        super().__init__()
        if max_relative_position <= 0:
            raise ValueError(f"max_relative_position must be > 0, got {max_relative_position}")
        self.max_relative_position = max_relative_position
        self.bias = nn.Parameter(torch.zeros(num_heads, 2 * max_relative_position + 1))

    def reset_relative_tables(self, std: float) -> None:
        nn.init.normal_(self.bias, std=std)

    def context(self, seq_len: int, device: torch.device) -> PositionContext:
        return PositionContext(rel_bias=self.bias)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, H, S, D] by position (half-split convention)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class RotaryPositionalEncoding(PositionalEncodingBase):
    """Rotary embeddings (RoFormer), applied to q and k in every attention layer."""

    def __init__(self, d_model: int, num_heads: int = 1, base: float = 10000.0, **_: object):
        super().__init__()
        head_dim = d_model // num_heads
        if head_dim % 2:
            raise ValueError(f"rotary encoding needs an even head dim, got {head_dim}")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def context(self, seq_len: int, device: torch.device) -> PositionContext:
        positions = torch.arange(seq_len, device=device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq.to(device)[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return PositionContext(rotary=(torch.cos(angles), torch.sin(angles)))
