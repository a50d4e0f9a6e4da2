"""Each attention module against a dense masked reference built from its own projections."""

import pytest
import torch

from seo_export import AttentionFactory, RotaryPositionalEncoding
from seo_export.models.positional import PositionContext
from tests.reference import (
    band_allowed,
    bias_matrix,
    dense_attention,
    landmark_reference,
    prefix_mask,
    shaw_reference,
)

D_MODEL, HEADS, SEQ = 32, 4, 23


def _project(module, x):
    def heads(t):
        return t.view(x.shape[0], x.shape[1], HEADS, -1).transpose(1, 2)

    return heads(module.q_proj(x)), heads(module.k_proj(x)), heads(module.v_proj(x))


def _finish(module, out):
    out = out.float().transpose(1, 2).reshape(out.shape[0], out.shape[2], D_MODEL)
    return module.out_proj(out)


def _reference(module, kind, q, k, v, mask, causal, rel_bias, q_plain=None):
    seq = q.shape[2]
    allowed = mask[:, None, None, :]
    bias = None if rel_bias is None else bias_matrix(rel_bias, range(seq), range(seq))[None]
    if kind == "standard":
        if causal:
            allowed = allowed & band_allowed(seq, seq, 0)
        return dense_attention(q, k, v, allowed, bias)
    if kind == "local":
        left, right = (7, 0) if causal else (4, 4)
        return dense_attention(q, k, v, allowed & band_allowed(seq, left, right), bias)
    if kind == "relative":
        if causal:
            allowed = allowed & band_allowed(seq, seq, 0)
        return shaw_reference(q, k, v, module.rel_key, module.rel_value, allowed, q_plain=q_plain, bias=bias)
    return landmark_reference(q, k, v, 5, 6, mask, rel_bias)


KWARGS = {"standard": {}, "local": {"window_size": 8}, "sparse": {"num_landmarks": 5},
          "relative": {"max_relative_position": 4}}
CASES = [(kind, causal) for kind in KWARGS for causal in (False, True) if not (kind == "sparse" and causal)]


@pytest.mark.parametrize("kind,causal", CASES)
def test_attention_matches_dense_reference(kind, causal):
    module = AttentionFactory.create_attention(kind, D_MODEL, HEADS, causal=causal, **KWARGS[kind]).eval()
    if kind == "relative":
        torch.nn.init.normal_(module.rel_key)
        torch.nn.init.normal_(module.rel_value)
    x = torch.randn(3, SEQ, D_MODEL)
    mask = prefix_mask(SEQ, [SEQ, 11, 0])
    with torch.no_grad():
        out, weights = module(x, mask, output_attentions=True)
        q, k, v = _project(module, x)
        expected = _finish(module, _reference(module, kind, q, k, v, mask, causal, None))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(out).all()
    assert weights.shape == (3, HEADS, SEQ, SEQ)
    if kind != "relative":  # Shaw adds an a^V term the probabilities alone do not carry
        torch.testing.assert_close(_finish(module, weights @ v), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["standard", "local", "sparse", "relative"])
def test_relative_bias_and_rotary_reach_the_kernel(kind):
    module = AttentionFactory.create_attention(kind, D_MODEL, HEADS, **KWARGS[kind]).eval()
    x = torch.randn(2, SEQ, D_MODEL)
    mask = prefix_mask(SEQ, [SEQ, 15])
    rel_bias = torch.randn(HEADS, 2 * 3 + 1)
    if kind == "relative":
        torch.nn.init.normal_(module.rel_key)
    rotary = RotaryPositionalEncoding(D_MODEL, HEADS).context(SEQ, x.device)
    with torch.no_grad():
        out, _ = module(x, mask, PositionContext(rotary=rotary.rotary, rel_bias=rel_bias))
        q, k, v = _project(module, x)
        cos, sin = rotary.rotary
        half = q.shape[-1] // 2

        def rot(t):  # the rotate_half convention, written out
            return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

        expected = _finish(module, _reference(module, kind, rot(q), rot(k), v, mask, False, rel_bias, q_plain=q))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_factory_registry_lists_every_kind_and_rejects_unknown():
    assert set(AttentionFactory.available()) == {"standard", "local", "sparse", "relative"}
    with pytest.raises(ValueError, match="valid: standard, local, sparse, relative"):
        AttentionFactory.create_attention("dense", D_MODEL, HEADS)


def test_adding_a_kind_is_one_registration():
    from seo_export.models.attention import ATTENTIONS, MultiHeadAttention

    class Doubled(MultiHeadAttention):
        pass

    ATTENTIONS.register("doubled-test")(Doubled)
    try:
        assert isinstance(AttentionFactory.create_attention("doubled-test", D_MODEL, HEADS), Doubled)
    finally:
        ATTENTIONS._builders.pop("doubled-test")
