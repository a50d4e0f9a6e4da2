"""Positional encodings and their registry."""

from __future__ import annotations

from seo_export.models.positional.absolute import LearnedPositionalEncoding, PositionalEncoding
from seo_export.models.positional.base import PositionalEncodingBase, PositionContext
from seo_export.models.positional.relative import RelativePositionalEncoding, RotaryPositionalEncoding, apply_rotary
from seo_export.models.registry import Registry

POSITIONAL_ENCODINGS: Registry[PositionalEncodingBase] = Registry("positional encoding type")
POSITIONAL_ENCODINGS.register("sinusoidal")(PositionalEncoding)
POSITIONAL_ENCODINGS.register("learned")(LearnedPositionalEncoding)
POSITIONAL_ENCODINGS.register("relative")(RelativePositionalEncoding)
POSITIONAL_ENCODINGS.register("rotary")(RotaryPositionalEncoding)


class PositionalEncodingFactory:
    """``create_positional_encoding(encoding_type=..., d_model=..., **kw)`` over the registry."""

    registry = POSITIONAL_ENCODINGS

    @staticmethod
    def create_positional_encoding(encoding_type: str, d_model: int, **kwargs) -> PositionalEncodingBase:
        return POSITIONAL_ENCODINGS.create(encoding_type, d_model, **kwargs)

    @staticmethod
    def available() -> tuple[str, ...]:
        return POSITIONAL_ENCODINGS.names()


__all__ = [
    "POSITIONAL_ENCODINGS",
    "LearnedPositionalEncoding",
    "PositionContext",
    "PositionalEncoding",
    "PositionalEncodingBase",
    "PositionalEncodingFactory",
    "RelativePositionalEncoding",
    "RotaryPositionalEncoding",
    "apply_rotary",
]
