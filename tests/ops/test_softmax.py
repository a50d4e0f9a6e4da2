import math

import torch

from seo_export.ops.softmax import masked_softmax, softmax_allowed, zero_empty_rows


def test_excluded_entries_are_exactly_zero_and_the_rest_a_softmax():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    allowed = torch.tensor([[True, False, True], [True, True, True]])
    probs = softmax_allowed(logits, allowed)
    e1, e3 = math.exp(1.0), math.exp(3.0)
    torch.testing.assert_close(probs[0], torch.tensor([e1 / (e1 + e3), 0.0, e3 / (e1 + e3)]))
    assert probs[0, 1].item() == 0.0
    torch.testing.assert_close(probs[1], torch.softmax(logits[1], -1))


def test_a_row_with_no_allowed_key_is_zero_only_after_zero_empty_rows():
    logits = torch.tensor([[1.0, 2.0], [3.0, -7.0]])
    allowed = torch.tensor([[True, True], [False, False]])
    raw = softmax_allowed(logits, allowed)
    assert torch.isfinite(raw).all()  # uniform, not NaN
    out = masked_softmax(logits, allowed)
    assert (out[1] == 0).all()
    torch.testing.assert_close(out[0], torch.softmax(logits[0], -1))
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert zero_empty_rows(values, allowed).tolist() == [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]


def test_broadcast_mask_and_half_precision_logits():
    logits = torch.tensor([[[60000.0, -60000.0, 100.0]], [[1.0, 1.0, 1.0]]], dtype=torch.float16)
    allowed = torch.tensor([[[True, True, False]]])  # broadcast over the first axis
    probs = masked_softmax(logits, allowed)
    assert probs.dtype == torch.float16 and torch.isfinite(probs).all()
    assert probs[0, 0].tolist() == [1.0, 0.0, 0.0]
    torch.testing.assert_close(probs[1, 0].float(), torch.tensor([0.5, 0.5, 0.0]))


def test_gradients_stay_finite_with_an_empty_row():
    logits = torch.randn(2, 4, requires_grad=True)
    allowed = torch.tensor([[True, False, True, True], [False, False, False, False]])
    (masked_softmax(logits, allowed) * torch.randn(2, 4)).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[1] == 0).all() and logits.grad[0, 1].item() == 0.0
