"""Reference landmark (Nystrom) attention in O(S * L) time and memory.

The sequence is cut into L contiguous segments of ceil(S / L) tokens. Landmarks are
the masked means of Q and K over each segment; a segment with no real token is
empty and excluded from every softmax. The output is A1 . pinv(A2) . (A3 . V).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seo_export.ops.softmax import default_scale, masked_softmax, rel_bias_max_distance, relative_bucket


def segment_layout(seq: int, num_landmarks: int, device=None) -> tuple[int, torch.Tensor]:
    """Segment length and each landmark's position (the centre of its segment, rounded down)."""
    seg = -(-seq // num_landmarks)
    start = torch.arange(num_landmarks, device=device) * seg
    length = (seq - start).clamp(0, seg)
    return seg, start + torch.div(length - 1, 2, rounding_mode="floor")


def newton_schulz_pinv(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse by the Nystromformer iteration, scaled per matrix.

    The initial scaling 1 / (max column sum * max row sum) is taken per [.., L, L]
    slice, so no sample's result depends on another sample in its batch.
    """
    a = a.float()
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    col = a.abs().sum(-2).amax(-1, keepdim=True)
    row = a.abs().sum(-1).amax(-1, keepdim=True)
    norm = (col * row)[..., None]
    z = a.transpose(-1, -2) * torch.where(norm > 0, 1.0 / torch.where(norm > 0, norm, 1.0), 0.0)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def _landmark_stages(q, k, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale):
    """A1 [B,H,S,L], pinv(A2) [B,H,L,L] and A3 [B,H,L,S], all float32."""
    batch, heads, seq, dim = q.shape
    scale = default_scale(dim, scale)
    seg, centre = segment_layout(seq, num_landmarks, q.device)
    padded = seg * num_landmarks
    qf, kf = q.float(), k.float()
    if key_padding_mask is None:
        key_padding_mask = torch.ones(batch, seq, dtype=torch.bool, device=q.device)
    tokens = key_padding_mask.bool()

    seg_mask = F.pad(tokens, (0, padded - seq), value=False).view(batch, num_landmarks, seg)
    count = seg_mask.sum(-1)
    valid = count > 0  # [B, L]
    weights = seg_mask.float() / count.clamp(min=1)[..., None].float()

    def landmarks(x):
        x = F.pad(x, (0, 0, 0, padded - seq)).view(batch, heads, num_landmarks, seg, dim)
        return torch.einsum("bls,bhlsd->bhld", weights, x)

    q_land, k_land = landmarks(qf), landmarks(kf)

    def bias(rel):
        if rel_bias is None:
            return 0.0
        return rel_bias.float()[:, relative_bucket(rel, rel_bias_max_distance(rel_bias))][None]

    positions = torch.arange(seq, device=q.device)
    a1 = masked_softmax(
        qf @ k_land.transpose(-1, -2) * scale + bias(centre[None, :] - positions[:, None]),
        valid[:, None, None, :],
    )
    a2 = masked_softmax(
        q_land @ k_land.transpose(-1, -2) * scale + bias(centre[None, :] - centre[:, None]),
        valid[:, None, :, None] & valid[:, None, None, :],
    )
    a3 = masked_softmax(
        q_land @ kf.transpose(-1, -2) * scale + bias(positions[None, :] - centre[:, None]),
        valid[:, None, :, None] & tokens[:, None, None, :],
    )
    return a1, newton_schulz_pinv(a2, pinv_iterations), a3


def landmark_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_landmarks: int,
    pinv_iterations: int = 6,
    key_padding_mask: torch.Tensor | None = None,
    rel_bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    a1, a2_inv, a3 = _landmark_stages(q, k, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale)
    if dropout_p > 0.0:
        a1 = F.dropout(a1, dropout_p, training=True)
    out = a1 @ (a2_inv @ (a3 @ v.float()))
    return out.to(q.dtype)


def landmark_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    num_landmarks: int,
    pinv_iterations: int = 6,
    key_padding_mask: torch.Tensor | None = None,
    rel_bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """The effective dense [B, H, S, S] matrix A1 . pinv(A2) . A3 (for inspection only)."""
    a1, a2_inv, a3 = _landmark_stages(q, k, num_landmarks, pinv_iterations, key_padding_mask, rel_bias, scale)
    return a1 @ a2_inv @ a3
