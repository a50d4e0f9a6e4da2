"""The model zoo: attention kinds, positional encodings, config and the transformer."""

from seo_export.models.attention import (
    AttentionFactory,
    AttentionWithRelativePositions,
    LocalAttention,
    MultiHeadAttention,
    SparseAttention,
)
from seo_export.models.config import ATTENTION_TYPES, POSITIONAL_ENCODING_TYPES, ConfigError, TransformerConfig
from seo_export.models.positional import (
    LearnedPositionalEncoding,
    PositionalEncoding,
    PositionalEncodingFactory,
    RelativePositionalEncoding,
    RotaryPositionalEncoding,
)
from seo_export.models.transformer import SEOSpecificTransformer

__all__ = [
    "ATTENTION_TYPES",
    "POSITIONAL_ENCODING_TYPES",
    "AttentionFactory",
    "AttentionWithRelativePositions",
    "ConfigError",
    "LearnedPositionalEncoding",
    "LocalAttention",
    "MultiHeadAttention",
    "PositionalEncoding",
    "PositionalEncodingFactory",
    "RelativePositionalEncoding",
    "RotaryPositionalEncoding",
    "SEOSpecificTransformer",
    "SparseAttention",
    "TransformerConfig",
]
