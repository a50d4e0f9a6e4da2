"""Dense references written independently of seo_export: plain loops and full S x S masks.

Nothing here imports seo_export, so a bug in the code under test cannot hide in its reference.
"""

from __future__ import annotations

import numpy as np
import torch


def softmax_rows(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Row softmax over allowed entries via -inf; rows with nothing allowed become zeros."""
    x = logits.double().masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    return torch.nan_to_num(probs, nan=0.0)


def band_allowed(seq: int, left: int, right: int) -> torch.Tensor:
    allowed = torch.zeros(seq, seq, dtype=torch.bool)
    for i in range(seq):
        for j in range(max(0, i - left), min(seq, i + right + 1)):
            allowed[i, j] = True
    return allowed


def bias_matrix(rel_bias: torch.Tensor, rows, cols) -> torch.Tensor:
    """[H, len(rows), len(cols)] with b[h, clip(col - row, -K, K) + K]."""
    k = (rel_bias.shape[1] - 1) // 2
    out = torch.zeros(rel_bias.shape[0], len(rows), len(cols), dtype=torch.float64)
    for a, i in enumerate(rows):
        for c, j in enumerate(cols):
            out[:, a, c] = rel_bias[:, min(max(int(j) - int(i), -k), k) + k].double()
    return out


def dense_attention(q, k, v, allowed, bias=None, scale=None):
    """allowed broadcastable to [B, H, S, S]; computed in float64."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = q.double() @ k.double().transpose(-1, -2) * scale
    if bias is not None:
        logits = logits + bias
    return softmax_rows(logits, allowed.expand_as(logits)) @ v.double()


def local_reference(q, k, v, left, right, key_mask=None, rel_bias=None, scale=None):
    batch, heads, seq, _ = q.shape
    allowed = band_allowed(seq, left, right)[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    bias = None if rel_bias is None else bias_matrix(rel_bias, range(seq), range(seq))[None]
    return dense_attention(q, k, v, allowed, bias, scale)


def _softmax_np(x, allowed):
    out = np.zeros_like(x)
    for r in range(x.shape[0]):
        cols = np.nonzero(allowed[r])[0]
        if len(cols):
            e = np.exp(x[r, cols] - x[r, cols].max())
            out[r, cols] = e / e.sum()
    return out


def landmark_reference(q, k, v, num_landmarks, iterations, key_mask=None, rel_bias=None, scale=None):
    """Nystromformer per (batch, head) slice with explicit segment loops, in float64 numpy."""
    batch, heads, seq, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    key_mask = torch.ones(batch, seq, dtype=torch.bool) if key_mask is None else key_mask
    seg = -(-seq // num_landmarks)
    out = np.zeros((batch, heads, seq, dim))
    qn, kn, vn = (t.double().numpy() for t in (q, k, v))
    mask = key_mask.numpy()
    centres = []
    for m in range(num_landmarks):
        start, stop = m * seg, min((m + 1) * seg, seq)
        centres.append(start + (max(stop - start, 0) - 1) // 2)
    bias = None if rel_bias is None else rel_bias.double().numpy()
    kk = None if rel_bias is None else (rel_bias.shape[1] - 1) // 2

    def b(h, rows, cols):
        if bias is None:
            return 0.0
        return np.array([[bias[h, min(max(c - r, -kk), kk) + kk] for c in cols] for r in rows])

    for bi in range(batch):
        members = [[t for t in range(m * seg, min((m + 1) * seg, seq)) if mask[bi, t]] for m in range(num_landmarks)]
        valid = np.array([len(x) > 0 for x in members])
        for h in range(heads):
            ql = np.stack([qn[bi, h, x].mean(0) if x else np.zeros(dim) for x in members])
            kl = np.stack([kn[bi, h, x].mean(0) if x else np.zeros(dim) for x in members])
            a1 = _softmax_np(qn[bi, h] @ kl.T * scale + b(h, range(seq), centres),
                             np.broadcast_to(valid[None, :], (seq, num_landmarks)))
            a2 = _softmax_np(ql @ kl.T * scale + b(h, centres, centres), valid[:, None] & valid[None, :])
            a3 = _softmax_np(ql @ kn[bi, h].T * scale + b(h, centres, range(seq)), valid[:, None] & mask[bi][None, :])
            norm = np.abs(a2).sum(0).max() * np.abs(a2).sum(1).max()
            z = a2.T / norm if norm > 0 else np.zeros_like(a2)
            eye = np.eye(num_landmarks)
            for _ in range(iterations):
                az = a2 @ z
                z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
            out[bi, h] = a1 @ z @ (a3 @ vn[bi, h])
    return torch.from_numpy(out)


def shaw_reference(q, k, v, rel_key, rel_value, allowed, scale=None, q_plain=None, bias=None):
    """Shaw et al. with the explicit [S, S, D] embedding tensors (fine at test sizes).

    ``q_plain``: the unrotated query for the q . a^K term (defaults to ``q``).
    """
    q_plain = q if q_plain is None else q_plain
    seq = q.shape[2]
    kk = (rel_key.shape[0] - 1) // 2
    idx = torch.tensor([[min(max(j - i, -kk), kk) + kk for j in range(seq)] for i in range(seq)])
    ak, av = rel_key.double()[idx], rel_value.double()[idx]  # [S, S, D]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q.double() @ k.double().transpose(-1, -2) + torch.einsum("bhid,ijd->bhij", q_plain.double(), ak)) * scale
    if bias is not None:
        logits = logits + bias
    probs = softmax_rows(logits, allowed.expand_as(logits))
    return probs @ v.double() + torch.einsum("bhij,ijd->bhid", probs, av)


def prefix_mask(seq: int, lengths) -> torch.Tensor:
    """[len(lengths), seq] bool, True for the first ``lengths[b]`` tokens of row b."""
    mask = torch.zeros(len(lengths), seq, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return mask
