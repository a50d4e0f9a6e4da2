"""Masked softmax and relative-position indexing shared by every attention kind."""

from __future__ import annotations

import torch


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``allowed`` entries only; a row with no allowed entry is all zeros.

    Computed in float32 at least (FP16 logits overflow in exp) and returned in the
    logits' dtype. Masking uses ``where`` rather than adding -inf/-1e9 so that an
    empty row never produces NaN.
    """
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    neg_inf = torch.tensor(float("-inf"), dtype=work.dtype, device=work.device)
    row_max = torch.where(allowed, work, neg_inf).amax(dim=dim, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp = torch.where(allowed, torch.exp(work - row_max), torch.zeros_like(work))
    denom = exp.sum(dim=dim, keepdim=True)
    probs = exp / torch.where(denom > 0, denom, torch.ones_like(denom))
    return probs.to(logits.dtype)


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
