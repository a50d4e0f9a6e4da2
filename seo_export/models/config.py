"""TransformerConfig: every field validated at construction, JSON in and out."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from seo_export.errors import UsageError

ATTENTION_TYPES = ("standard", "local", "sparse", "relative")
POSITIONAL_ENCODING_TYPES = ("sinusoidal", "learned", "relative", "rotary")
#: The feed-forward activation: exact (erf) GELU, or its tanh approximation (transformers' gelu_new).
HIDDEN_ACTIVATIONS = ("gelu", "gelu_tanh")
#: The classification head: "pooler" is BERT's (a linear layer on pooler_output); the others are a
#: dense layer on the first token's hidden state, this activation, then the output layer.
CLASSIFIER_ACTIVATIONS = ("pooler", "tanh", "gelu", "gelu_tanh")


class ConfigError(UsageError, ValueError):
    """An invalid configuration value or file; the message names the field."""


@dataclass
class TransformerConfig:
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    vocab_size: int = 30522
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    dropout_rate: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    type_vocab_size: int = 2
    pad_token_id: int = 0
    attention_type: str = "standard"
    attention_window_size: int = 128
    attention_num_landmarks: int = 64
    attention_pinv_iterations: int = 6
    attention_max_relative_position: int = 32
    # Nystromformer's depthwise convolution over V (kernel x 1, per head) added to the attention
    # output before the output projection; 0 means none.
    attention_value_conv_kernel: int = 0
    positional_encoding_type: str = "sinusoidal"
    positional_encoding_max_len: int = 5000
    positional_encoding_max_relative_position: int = 32
    use_causal_mask: bool = False
    use_padding_mask: bool = True
    return_attention_weights: bool = False
    use_mixed_precision: bool = False
    gradient_checkpointing: bool = False
    # Sequence classification: num_labels > 0 adds the head and a ``logits`` output.
    num_labels: int = 0
    classifier_activation: str = "pooler"

    def __post_init__(self) -> None:
        self._check_types()
        positive = (
            "hidden_size", "num_layers", "num_heads", "vocab_size", "intermediate_size", "type_vocab_size",
            "attention_window_size", "attention_num_landmarks", "attention_max_relative_position",
            "positional_encoding_max_len", "positional_encoding_max_relative_position",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("dropout_rate", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0 or self.initializer_range <= 0:
            raise ConfigError("layer_norm_eps and initializer_range must be > 0")
        if self.attention_pinv_iterations < 0:
            raise ConfigError(f"attention_pinv_iterations must be >= 0, got {self.attention_pinv_iterations}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.attention_type not in ATTENTION_TYPES:
            raise ConfigError(
                f"attention_type {self.attention_type!r} is unknown; valid: {', '.join(ATTENTION_TYPES)}"
            )
        if self.positional_encoding_type not in POSITIONAL_ENCODING_TYPES:
            raise ConfigError(
                f"positional_encoding_type {self.positional_encoding_type!r} is unknown; "
                f"valid: {', '.join(POSITIONAL_ENCODING_TYPES)}"
            )
        for name, valid in (("hidden_act", HIDDEN_ACTIVATIONS), ("classifier_activation", CLASSIFIER_ACTIVATIONS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name} {getattr(self, name)!r} is unknown; valid: {', '.join(valid)}")
        if self.num_labels < 0:
            raise ConfigError(f"num_labels must be >= 0 (0: no classification head), got {self.num_labels}")
        kernel = self.attention_value_conv_kernel
        if kernel < 0 or (kernel and kernel % 2 == 0):
            raise ConfigError(f"attention_value_conv_kernel must be 0 (none) or an odd kernel size, got {kernel}: "
                              "an even kernel would not keep the sequence length")
        if self.positional_encoding_type == "rotary" and self.head_dim % 2:
            raise ConfigError(
                f"rotary encoding needs an even head dim (hidden_size / num_heads), got {self.head_dim}"
            )
        if self.use_causal_mask and self.attention_type == "sparse":
            raise ConfigError(
                "use_causal_mask is not defined for attention_type 'sparse': landmarks average over whole "
                "segments, which mixes future tokens into every query; use 'local' or 'standard' for causal models"
            )

    def _check_types(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = {"int": int, "float": (int, float), "str": str, "bool": bool}[f.type]
            bad_bool = isinstance(value, bool) and f.type in ("int", "float")
            if not isinstance(value, expected) or bad_bool:
                raise ConfigError(f"{f.name} must be of type {f.type}, got {value!r}")
            if f.type == "float":
                setattr(self, f.name, float(value))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def replace(self, **changes) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self, path: str | os.PathLike) -> None:
        from seo_export.utils.files import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TransformerConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)
