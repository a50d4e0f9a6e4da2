"""The custom attention ops: local-window and landmark attention.

``backend="reference"`` runs the torch implementation as one ``seo::`` custom op
(what the exporter sees); ``backend="triton"`` runs the GPU kernels from
``plugins/``. When autograd is needed the differentiable reference runs directly.
"""

from __future__ import annotations

import torch

from seo_export.ops import library
from seo_export.ops.landmark import landmark_attention_reference, landmark_attention_weights
from seo_export.ops.local_window import local_window_attention_reference, local_window_attention_weights
from seo_export.ops.softmax import default_scale, masked_softmax
from seo_export.ops.validation import check_attention_inputs

BACKENDS = ("reference", "triton")


def _needs_autograd(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def local_window_attention(
    q, k, v, *, window_left: int, window_right: int, key_padding_mask=None, rel_bias=None, scale=None,
    backend: str = "reference",
) -> torch.Tensor:
    """Attention where query i sees keys j with -window_left <= j - i <= window_right."""
    _check_backend(backend)
    check_attention_inputs(q, k, v, key_padding_mask, rel_bias)
    if window_left < 0 or window_right < 0:
        raise ValueError(f"window_left and window_right must be >= 0, got {window_left}, {window_right}")
    scale = default_scale(q.shape[-1], scale)
    if backend == "triton":
        from seo_export.ops.triton_backend import local_window_attention_triton

        return local_window_attention_triton(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale)
    if _needs_autograd(q, k, v, rel_bias):
        return local_window_attention_reference(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale)
    return library.local_window_attention_op(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale)


def landmark_attention(
    q, k, v, *, num_landmarks: int, pinv_iterations: int = 6, key_padding_mask=None, rel_bias=None, scale=None,
    backend: str = "reference",
) -> torch.Tensor:
    """Nystrom landmark attention A1 . pinv(A2) . (A3 . V) with ``num_landmarks`` segments."""
    _check_backend(backend)
    check_attention_inputs(q, k, v, key_padding_mask, rel_bias)
    if num_landmarks <= 0 or pinv_iterations < 0:
        raise ValueError(
            f"num_landmarks must be > 0 and pinv_iterations >= 0, got {num_landmarks}, {pinv_iterations}"
        )
    scale = default_scale(q.shape[-1], scale)
    if backend == "triton":
        from seo_export.ops.triton_backend import landmark_attention_triton

        return landmark_attention_triton(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale)
    if _needs_autograd(q, k, v, rel_bias):
        return landmark_attention_reference(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale)
    return library.landmark_attention_op(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale)


__all__ = [
    "BACKENDS",
    "landmark_attention",
    "landmark_attention_reference",
    "landmark_attention_weights",
    "local_window_attention",
    "local_window_attention_reference",
    "local_window_attention_weights",
    "masked_softmax",
]
