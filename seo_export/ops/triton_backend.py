"""``backend="triton"`` for the seo ops: thin wrappers over the launchers in ``seo_plugins.kernels``.

Inputs arrive validated and with a float ``scale`` (see ``seo_export.ops``). The kernels
run on CUDA tensors, or on CPU under ``TRITON_INTERPRET=1``; they do not support autograd.
"""

from __future__ import annotations

from seo_export.errors import MissingDependencyError

try:
    import triton  # noqa: F401  (an optional dependency)
except ImportError as exc:
    raise MissingDependencyError(
        f"backend='triton' needs Triton ({exc}); install it with: pip install 'seo-export[kernels]'"
    ) from exc

from seo_plugins.kernels.landmark import landmark_attention as _landmark_attention  # noqa: E402
from seo_plugins.kernels.local_window import local_window_attention as _local_window_attention  # noqa: E402


def local_window_attention_triton(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale):
    return _local_window_attention(q, k, v, window_left, window_right, key_padding_mask, rel_bias, scale=scale)


def landmark_attention_triton(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale):
    return _landmark_attention(q, k, v, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale=scale)
