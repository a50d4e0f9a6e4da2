"""Local sliding-window and landmark attention: thin modules over the ``seo`` ops (on the backend
``kernels.ops_backend`` chooses)."""

from __future__ import annotations

from seo_export import ops
from seo_export.models.attention.base import AttentionBase
from seo_export.models.attention.kernels import backend_for


class LocalAttention(AttentionBase):
    """Bidirectional: |i - j| <= window_size // 2. Causal: 0 <= i - j <= window_size - 1."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, causal: bool = False,
                 window_size: int = 128):
        super().__init__(d_model, num_heads, dropout, causal)
        if window_size <= 0:
            raise ValueError(f"window_size must be > 0, got {window_size}")
        self.window_size = window_size
        if causal:
            self.window_left, self.window_right = window_size - 1, 0
        else:
            self.window_left = self.window_right = window_size // 2

    def attend(self, q, k, v, key_padding_mask, rel_bias, need_weights, query_plain):
        window = dict(window_left=self.window_left, window_right=self.window_right)
        if self.active_dropout > 0:
            out = ops.local_window_attention_reference(
                q, k, v, **window, key_padding_mask=key_padding_mask, rel_bias=rel_bias, scale=self.scale,
                dropout_p=self.active_dropout,
            )
        else:
            out = ops.local_window_attention(
                q, k, v, **window, key_padding_mask=key_padding_mask, rel_bias=rel_bias, scale=self.scale,
                backend=backend_for(q, k, v, rel_bias),
            )
        weights = None
        if need_weights:
            weights = ops.local_window_attention_weights(
                q, k, **window, key_padding_mask=key_padding_mask, rel_bias=rel_bias, scale=self.scale
            )
        return out, weights


class SparseAttention(AttentionBase):
    """Landmark (Nystrom) attention with ``num_landmarks`` segment means."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, causal: bool = False,
                 num_landmarks: int = 64, pinv_iterations: int = 6):
        if causal:
            raise ValueError("causal masking is not defined for landmark (sparse) attention")
        super().__init__(d_model, num_heads, dropout, causal)
        if num_landmarks <= 0:
            raise ValueError(f"num_landmarks must be > 0, got {num_landmarks}")
        self.num_landmarks = num_landmarks
        self.pinv_iterations = pinv_iterations

    def attend(self, q, k, v, key_padding_mask, rel_bias, need_weights, query_plain):
        args = dict(num_landmarks=self.num_landmarks, pinv_iterations=self.pinv_iterations,
                    key_padding_mask=key_padding_mask, rel_bias=rel_bias, scale=self.scale)
        if self.active_dropout > 0:
            out = ops.landmark_attention_reference(q, k, v, **args, dropout_p=self.active_dropout)
        else:
            out = ops.landmark_attention(q, k, v, **args, backend=backend_for(q, k, v, rel_bias))
        weights = ops.landmark_attention_weights(q, k, **args) if need_weights else None
        return out, weights
