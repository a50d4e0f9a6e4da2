"""Attention kinds and their registry."""

from __future__ import annotations

from seo_export.models.attention.base import AttentionBase
from seo_export.models.attention.dense import AttentionWithRelativePositions, MultiHeadAttention
from seo_export.models.attention.kernels import current_ops_backend, ops_backend
from seo_export.models.attention.sparse import LocalAttention, SparseAttention
from seo_export.models.registry import Registry

ATTENTIONS: Registry[AttentionBase] = Registry("attention type")
ATTENTIONS.register("standard")(MultiHeadAttention)
ATTENTIONS.register("local")(LocalAttention)
ATTENTIONS.register("sparse")(SparseAttention)
ATTENTIONS.register("relative")(AttentionWithRelativePositions)


class AttentionFactory:
    """``create_attention(attention_type=..., d_model=..., num_heads=..., **kw)`` over the registry."""

    registry = ATTENTIONS

    @staticmethod
    def create_attention(attention_type: str, d_model: int, num_heads: int, **kwargs) -> AttentionBase:
        return ATTENTIONS.create(attention_type, d_model, num_heads, **kwargs)

    @staticmethod
    def available() -> tuple[str, ...]:
        return ATTENTIONS.names()


__all__ = [
    "ATTENTIONS",
    "AttentionBase",
    "AttentionFactory",
    "AttentionWithRelativePositions",
    "LocalAttention",
    "MultiHeadAttention",
    "SparseAttention",
    "current_ops_backend",
    "ops_backend",
]
