"""The module torch.onnx traces: the graph contract's inputs and outputs, plus named internals.

Every export also names each layer's output (``hidden_state_i``) and each attention
block's output (``attention_output_i``) inside the graph, though only the two
contract outputs are graph outputs. ``validate`` promotes those names to outputs
again to find the first layer where a backend leaves tolerance.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._pytree import tree_map

from seo_export.models.transformer import SEOSpecificTransformer

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("last_hidden_state", "pooler_output")


def internal_names(num_layers: int) -> tuple[str, ...]:
    """In graph order: the embedding output, then per layer its attention output and its output."""
    names = ["hidden_state_0"]
    for i in range(1, num_layers + 1):
        names += [f"attention_output_{i}", f"hidden_state_{i}"]
    return tuple(names)


def locate_internal(name: str) -> tuple[int, str]:
    """(layer, block) for an internal name; layer 0 is the embeddings, layers count from 1."""
    index = int(name.rsplit("_", 1)[1])
    if name.startswith("attention_output_"):
        return index, "attention"
    return index, "embeddings" if index == 0 else "feed_forward"


def block_module(layer: int, block: str) -> str:
    """The module name a (layer, block) lives in, as ``--keep-fp32`` takes it."""
    if block == "embeddings":
        return "embeddings"
    return f"layers.{layer - 1}.attention" if block == "attention" else f"layers.{layer - 1}"


class Fp32Island(nn.Module):
    """Runs a submodule of a half-precision model in float32, casting at its borders."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.float()

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # transparent to code that reads the wrapped module's attributes
            return getattr(self.inner, name)

    def forward(self, *args):
        def cast(dtype):
            return lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

        return tree_map(cast(torch.float16), self.inner(*tree_map(cast(torch.float32), args)))


def keep_in_fp32(model: nn.Module, module_names: tuple[str, ...]) -> None:
    for name in module_names:
        parent_name, _, child = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
            original = getattr(parent, child)
        except AttributeError:
            raise ValueError(f"--keep-fp32 {name}: the model has no such module (e.g. layers.0.attention)") from None
        setattr(parent, child, Fp32Island(original))


class ExportWrapper(nn.Module):
    """(input_ids, attention_mask) -> (last_hidden_state, pooler_output[, internals...])."""

    def __init__(self, model: SEOSpecificTransformer, output_dtype: torch.dtype | None = None,
                 with_internals: bool = False):
        super().__init__()
        self.model = model
        self.output_dtype = output_dtype
        self.with_internals = with_internals
        self._attention_outputs: list[torch.Tensor] = []
        if with_internals:
            for layer in model.layers:
                layer.attention.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self._attention_outputs.append(output[0])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self._attention_outputs.clear()
        out = self.model(input_ids, attention_mask, output_hidden_states=self.with_internals)
        outputs = [out["last_hidden_state"], out["pooler_output"]]
        if self.output_dtype is not None:
            outputs = [o.to(self.output_dtype) for o in outputs]
        if self.with_internals:
            hidden = out["hidden_states"]
            internals = [hidden[0]]
            for attention, layer_output in zip(self._attention_outputs, hidden[1:]):
                internals += [attention, layer_output]
            outputs.extend(internals)
        return tuple(outputs)
