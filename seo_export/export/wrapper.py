"""The module torch.onnx traces: the graph contract's inputs and outputs, nothing more."""

from __future__ import annotations

import torch
from torch import nn

from seo_export.models.transformer import SEOSpecificTransformer

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("last_hidden_state", "pooler_output")


def hidden_state_names(num_layers: int) -> tuple[str, ...]:
    """Extra outputs for locating a parity break: the embedding output, then one per layer."""
    return tuple(f"hidden_state_{i}" for i in range(num_layers + 1))


class ExportWrapper(nn.Module):
    """(input_ids, attention_mask) -> (last_hidden_state, pooler_output[, hidden states...])."""

    def __init__(self, model: SEOSpecificTransformer, output_dtype: torch.dtype | None = None,
                 with_hidden_states: bool = False):
        super().__init__()
        self.model = model
        self.output_dtype = output_dtype
        self.with_hidden_states = with_hidden_states

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.model(input_ids, attention_mask, output_hidden_states=self.with_hidden_states)
        outputs = [out["last_hidden_state"], out["pooler_output"]]
        if self.with_hidden_states:
            outputs.extend(out["hidden_states"])
        if self.output_dtype is not None:
            outputs = [o.to(self.output_dtype) for o in outputs]
        return tuple(outputs)
