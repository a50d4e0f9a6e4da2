"""Masked softmax and relative-position indexing shared by every attention kind."""

from __future__ import annotations

import torch


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``allowed`` entries only; a row with no allowed entry is all zeros.

    Computed in float32 at least (FP16 logits overflow in exp) and returned in the
    logits' dtype. Excluded entries are selected away with ``where`` (never by adding
    a large negative number): they are set to the lowest float32 before the softmax,
    so an empty row gives a finite uniform row (no NaN, not even in the backward
    pass), and zeroed after it. Exported, this is Where -> Softmax -> Where, the
    pattern TensorRT and ONNX Runtime fuse with the surrounding MatMuls.
    """
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    probs = torch.softmax(work.masked_fill(~allowed, torch.finfo(work.dtype).min), dim=dim)
    return torch.where(allowed, probs, torch.zeros((), dtype=probs.dtype, device=probs.device)).to(logits.dtype)


def relative_bucket(rel: torch.Tensor, max_relative_position: int) -> torch.Tensor:
    """Index into a [2K+1] table for relative distances ``rel`` = j - i, clipped to [-K, K]."""
    k = max_relative_position
    return rel.clamp(-k, k) + k


def relative_positions(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """[q_len, k_len] matrix of j - i."""
    i = torch.arange(q_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    return j - i


def rel_bias_max_distance(rel_bias: torch.Tensor) -> int:
    """K for a bias table of shape [H, 2K+1]."""
    width = rel_bias.shape[-1]
    if width % 2 != 1:
        raise ValueError(f"rel_bias must have an odd last dimension 2K+1, got {width}")
    return (width - 1) // 2


def default_scale(head_dim: int, scale: float | None) -> float:
    return float(head_dim) ** -0.5 if scale is None else float(scale)
