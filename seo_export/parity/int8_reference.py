"""An INT8 reference for validate: eager PyTorch with the INT8 file's quantization simulated.

When an ``ort-int8`` case fails the INT8 rule, the question a user has is whether INT8 itself loses
that accuracy on this model (then no export fixes it: serve it in FP32 or FP16) or the file does
(a broken export, quantizer or runtime). This answers it like with like, as eager FP16 does for the
FP16 rule: the same eager model, each ``nn.Linear`` run on its weight and its input rounded as the
file's settings round them, judged by the same rule against eager FP32.

The rounding follows the published scheme, not the code under test: ``torch.fake_quantize_*``
with weights per output channel (or per tensor), symmetric INT8 in [-127, 127] (QUInt8 weights
asymmetric in [0, 255]; ``reduce_range`` halves both ranges), as ``onnxruntime.quantization``
documents them, and each input per tensor to UINT8 by ONNX's ``DynamicQuantizeLinear`` formula:
range [min(0, min x), max(0, max x)], scale = range / 255, zero point round(-min / scale).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from seo_export.export.quantize import OP_TYPES

_WEIGHT_RANGES = {("QInt8", False): (-127, 127), ("QInt8", True): (-64, 64),
                  ("QUInt8", False): (0, 255), ("QUInt8", True): (0, 127)}


def fake_quantized_weight(weight: torch.Tensor, per_channel: bool, weight_type: str,
                          reduce_range: bool) -> torch.Tensor:
    """``weight`` [out, in] rounded to the file's INT8 grid (per output channel, or one scale)."""
    qmin, qmax = _WEIGHT_RANGES[(weight_type, reduce_range)]
    reduce = (lambda w: w.amin(dim=1), lambda w: w.amax(dim=1)) if per_channel else (torch.min, torch.max)
    low = torch.clamp(reduce[0](weight), max=0.0)
    high = torch.clamp(reduce[1](weight), min=0.0)
    if qmin < 0:  # symmetric: zero point 0
        high = torch.maximum(-low, high)
        low = -high
    scale = torch.clamp((high - low) / (qmax - qmin), min=torch.finfo(torch.float32).tiny)
    zero = torch.round(qmin - low / scale).clamp(qmin, qmax) if qmin == 0 else torch.zeros_like(scale)
    if per_channel:
        return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero.int(), 0, qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(weight, float(scale), int(zero), qmin, qmax)


def fake_quantized_activation(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``DynamicQuantizeLinear`` rounds it: UINT8, per tensor, the range widened to hold 0."""
    low = min(float(x.min()), 0.0)
    high = max(float(x.max()), 0.0)
    if high == low:
        return x
    scale = (high - low) / 255.0
    zero = int(min(max(round(-low / scale), 0), 255))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class _SimulatedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, settings: dict):
        super().__init__()
        self.weight = fake_quantized_weight(linear.weight.detach().float(), bool(settings["per_channel"]),
                                            settings["weight_type"], bool(settings["reduce_range"]))
        self.bias = None if linear.bias is None else linear.bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(fake_quantized_activation(x.float()), self.weight, self.bias)


def simulates(settings: dict | None) -> str | None:
    """None when the simulation covers a file quantized with ``settings`` (its metadata), else why not."""
    if not settings:
        return "the file records no quantization settings"
    if settings.get("fp32_linear_nodes", 0) or set(settings.get("op_types", ())) != set(OP_TYPES):
        return "the file keeps some linear layers in FP32, which the INT8 simulation does not follow"
    if (settings.get("weight_type"), bool(settings.get("reduce_range"))) not in _WEIGHT_RANGES:
        return f"the file's weight type {settings.get('weight_type')!r} is not one the INT8 simulation knows"
    return None


def simulated_int8(model: nn.Module, settings: dict) -> nn.Module:
    """A copy of ``model`` (FP32, eval) whose every ``nn.Linear`` runs on INT8-rounded weight and input."""
    copied = copy.deepcopy(model).float().eval()
    for module in list(copied.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, _SimulatedLinear(child, settings))
    return copied
