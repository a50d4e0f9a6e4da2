"""seo-export: export, accelerate and validate transformers with unusual attention."""

__version__ = "0.1.0"

from seo_export.models import (  # noqa: E402
    AttentionFactory,
    AttentionWithRelativePositions,
    LearnedPositionalEncoding,
    LocalAttention,
    MultiHeadAttention,
    PositionalEncoding,
    PositionalEncodingFactory,
    RelativePositionalEncoding,
    RotaryPositionalEncoding,
    SEOSpecificTransformer,
    SparseAttention,
    TransformerConfig,
)
from seo_export.convert import convert_hf  # noqa: E402

__all__ = [
    "__version__",
    "convert_hf",
    "AttentionFactory",
    "AttentionWithRelativePositions",
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
