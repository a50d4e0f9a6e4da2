import pytest
import torch

from seo_export import ops
from tests.reference import local_reference, prefix_mask

# (seq, window_left, window_right): S < window, S = 1, odd lengths, causal (right = 0), asymmetric.
CASES = [(1, 4, 4), (5, 8, 8), (37, 4, 4), (37, 7, 0), (64, 16, 16), (130, 3, 5), (100, 0, 0)]


@pytest.mark.parametrize("seq,left,right", CASES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_dense_reference(seq, left, right, with_bias):
    q, k, v = (torch.randn(3, 2, seq, 8) for _ in range(3))
    mask = prefix_mask(seq, [seq, max(seq // 2, 1), 0])  # full, half-padded, fully padded
    bias = torch.randn(2, 2 * 5 + 1) if with_bias else None
    out = ops.local_window_attention(q, k, v, window_left=left, window_right=right, key_padding_mask=mask,
                                     rel_bias=bias)
    expected = local_reference(q, k, v, left, right, mask, bias)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()
    assert (out[2] == 0).all(), "a row with no admissible key must output zeros"


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_inputs_accumulate_in_fp32(dtype, tol):
    # Tolerance: a few ulps of the output dtype (fp16 eps 9.8e-4, bf16 eps 7.8e-3) at unit scale.
    q, k, v = (torch.randn(2, 2, 45, 16) for _ in range(3))
    out = ops.local_window_attention(q.to(dtype), k.to(dtype), v.to(dtype), window_left=6, window_right=6)
    assert out.dtype == dtype
    expected = local_reference(q.to(dtype).float(), k.to(dtype).float(), v.to(dtype).float(), 6, 6)
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)


def test_registered_as_one_custom_op():
    q = torch.randn(1, 2, 10, 4)

    class M(torch.nn.Module):
        def forward(self, q):
            return ops.local_window_attention(q, q, q, window_left=2, window_right=2)

    graph = torch.export.export(M(), (q,)).graph
    targets = [n.target for n in graph.nodes if n.op == "call_function"]
    assert targets == [torch.ops.seo.local_window_attention.default]


def test_gradients_flow_through_the_reference():
    q = torch.randn(1, 1, 12, 4, requires_grad=True)
    ops.local_window_attention(q, q, q, window_left=2, window_right=1).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_left=-1, window_right=0), "window_left"),
    (dict(window_left=1, window_right=1, key_padding_mask=torch.ones(3, 3, dtype=torch.bool)), "key_padding_mask"),
    (dict(window_left=1, window_right=1, rel_bias=torch.zeros(2, 4)), "rel_bias"),
    (dict(window_left=1, window_right=1, backend="cuda"), "backend"),
])
def test_bad_arguments_are_named(kwargs, match):
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match=match):
        ops.local_window_attention(q, q, q, **kwargs)
