"""SEOSpecificTransformer: a BERT-style post-LN encoder with pluggable attention and positions."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from seo_export.models.activations import activation
from seo_export.models.attention import AttentionFactory
from seo_export.models.config import TransformerConfig
from seo_export.models.positional import PositionalEncodingFactory, PositionContext


def attention_kwargs(config: TransformerConfig) -> dict:
    """The attention constructor arguments each kind takes from the config."""
    extra = {
        "standard": {},
        "local": {"window_size": config.attention_window_size},
        "sparse": {"num_landmarks": config.attention_num_landmarks,
                   "pinv_iterations": config.attention_pinv_iterations},
        "relative": {"max_relative_position": config.attention_max_relative_position},
    }[config.attention_type]
    return {"dropout": config.attention_dropout, "causal": config.use_causal_mask, **extra}


class Embeddings(nn.Module):
    def __init__(self, config: TransformerConfig, positional: nn.Module):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.positional = positional
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids) + self.token_type(token_type_ids)
        return self.dropout(self.norm(self.positional(x)))


class TransformerLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.attention = AttentionFactory.create_attention(
            config.attention_type, config.hidden_size, config.num_heads, **attention_kwargs(config)
        )
        if config.attention_value_conv_kernel:
            self.attention.add_value_conv(config.attention_value_conv_kernel)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.activation = activation(config.hidden_act)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x, key_padding_mask, position: PositionContext, output_attentions: bool = False):
        attended, weights = self.attention(x, key_padding_mask, position, output_attentions)
        x = self.attention_norm(x + self.dropout(attended))
        ffn = self.output(self.activation(self.intermediate(x)))
        return self.output_norm(x + self.dropout(ffn)), weights


class ClassificationHead(nn.Module):
    """Sequence classification from the first token: BERT's linear layer on pooler_output
    ("pooler"), or RoFormer/Longformer/Nystromformer's dense -> activation -> out_proj."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.uses_pooler = config.classifier_activation == "pooler"
        if not self.uses_pooler:
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.activation = activation(config.classifier_activation)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        if self.uses_pooler:
            return self.out_proj(pooled)
        return self.out_proj(self.activation(self.dense(hidden[:, 0])))


class SEOSpecificTransformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        encoding_kwargs = {
            "max_len": config.positional_encoding_max_len,
            "num_heads": config.num_heads,
            "max_relative_position": config.positional_encoding_max_relative_position,
        }
        positional = PositionalEncodingFactory.create_positional_encoding(
            config.positional_encoding_type, config.hidden_size, **encoding_kwargs
        )
        self.embeddings = Embeddings(config, positional)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = ClassificationHead(config) if config.num_labels else None
        self.apply(self._init_weights)

    @property
    def positional(self) -> nn.Module:
        return self.embeddings.positional

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if hasattr(module, "reset_relative_tables"):  # Shaw tables and the relative-position bias
            module.reset_relative_tables(std)

    def _check_inputs(self, input_ids, attention_mask, token_type_ids) -> None:
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be [batch, seq] int64, got {tuple(input_ids.shape)} {input_ids.dtype}")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}")

    def _autocast(self, device: torch.device):
        if not (self.training and self.config.use_mixed_precision):
            return contextlib.nullcontext()
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=device.type, dtype=dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> dict[str, torch.Tensor | tuple[torch.Tensor, ...]]:
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        output_attentions = output_attentions or self.config.return_attention_weights
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        key_mask = None
        if attention_mask is not None and self.config.use_padding_mask:
            key_mask = attention_mask != 0

        with self._autocast(input_ids.device):
            hidden = self.embeddings(input_ids, token_type_ids)
            position = self.positional.context(input_ids.shape[1], input_ids.device)
            hidden_states, attentions = [hidden], []
            for layer in self.layers:
                if self.training and self.config.gradient_checkpointing:
                    hidden, weights = checkpoint(
                        layer, hidden, key_mask, position, output_attentions, use_reentrant=False
                    )
                else:
                    hidden, weights = layer(hidden, key_mask, position, output_attentions)
                hidden_states.append(hidden)
                attentions.append(weights)
            pooled = torch.tanh(self.pooler(hidden[:, 0]))
            logits = self.classifier(hidden, pooled) if self.classifier is not None else None

        result: dict = {"last_hidden_state": hidden, "pooler_output": pooled}
        if logits is not None:
            result["logits"] = logits
        if output_hidden_states:
            result["hidden_states"] = tuple(hidden_states)
        if output_attentions:
            result["attentions"] = tuple(attentions)
        return result
