"""The module torch.onnx traces: the graph contract's inputs and outputs, plus the named
internals of ``export.internals`` (each module's output), and the FP32 islands of FP16 exports."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._pytree import tree_map

from seo_export.export.internals import internal_names, output_names
from seo_export.models.transformer import SEOSpecificTransformer

INPUT_NAMES = ("input_ids", "attention_mask")


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


def keep_in_fp32(model: nn.Module, module_names: tuple[str, ...], source: nn.Module) -> None:
    """Wrap each named module of the half-precision ``model`` as an Fp32Island holding the module
    from the float32 ``source`` (the same model before ``half()``), so the island keeps the true
    FP32 weights rather than FP16-rounded ones cast back up."""
    for name in module_names:
        parent_name, _, child = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
            getattr(parent, child)
            original = source.get_submodule(name)
        except AttributeError:
            raise ValueError(f"--keep-fp32 {name}: the model has no such module (e.g. layers.0.attention)") from None
        setattr(parent, child, Fp32Island(original))


class ExportWrapper(nn.Module):
    """(input_ids, attention_mask) -> (last_hidden_state, pooler_output[, logits][, internals...])."""

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
        outputs = [out[name] for name in output_names(self.model.config)]
        if self.output_dtype is not None:
            outputs = [o.to(self.output_dtype) for o in outputs]
        if self.with_internals:
            hidden = out["hidden_states"]
            internals = [hidden[0]]
            for attention, layer_output in zip(self._attention_outputs, hidden[1:]):
                internals += [attention, layer_output]
            outputs.extend(internals)
        return tuple(outputs)
