"""The two ops registered with torch.library (namespace ``seo``).

Registering them as custom ops makes every call one opaque node for torch.export,
so the ONNX exporter can emit one ``seo::`` node per call. The fake kernels give
shapes and dtypes without computing.
"""

from __future__ import annotations

import torch

from seo_export.ops.landmark import landmark_attention_reference
from seo_export.ops.local_window import local_window_attention_reference


@torch.library.custom_op("seo::local_window_attention", mutates_args=())
def local_window_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window_left: int,
    window_right: int,
    key_padding_mask: torch.Tensor | None,
    rel_bias: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    return local_window_attention_reference(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale)


@local_window_attention_op.register_fake
def _local_window_attention_fake(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale):
    return torch.empty_like(q)


@torch.library.custom_op("seo::landmark_attention", mutates_args=())
def landmark_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_landmarks: int,
    pinv_iterations: int,
    key_padding_mask: torch.Tensor | None,
    rel_bias: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    return landmark_attention_reference(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale)


@landmark_attention_op.register_fake
def _landmark_attention_fake(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale):
    return torch.empty_like(q)
