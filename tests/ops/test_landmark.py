import pytest
import torch

from seo_export import ops
from tests.reference import dense_attention, landmark_reference, prefix_mask


@pytest.mark.parametrize("seq,landmarks", [(1, 4), (3, 4), (16, 4), (37, 8), (50, 7)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_loop_reference(seq, landmarks, with_bias):
    q, k, v = (torch.randn(3, 2, seq, 8) for _ in range(3))
    mask = prefix_mask(seq, [seq, max(seq // 2, 1), 0])
    bias = torch.randn(2, 2 * 6 + 1) if with_bias else None
    out = ops.landmark_attention(q, k, v, num_landmarks=landmarks, pinv_iterations=6, key_padding_mask=mask,
                                 rel_bias=bias)
    expected = landmark_reference(q, k, v, landmarks, 6, mask, bias)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(out).all()
    assert (out[2] == 0).all(), "a fully padded sample has no admissible key: zeros"


def test_approaches_exact_attention_when_landmarks_cover_every_token():
    q, k, v = (torch.randn(2, 2, 24, 8) * 0.5 for _ in range(3))
    mask = prefix_mask(24, [24, 17])
    exact = dense_attention(q, k, v, mask[:, None, None, :])
    errors = [
        (ops.landmark_attention(q, k, v, num_landmarks=32, pinv_iterations=n, key_padding_mask=mask).double()
         - exact).abs().max().item()
        for n in (2, 6, 20)
    ]
    assert errors[-1] < 1e-4
    assert errors[0] > errors[-1]


def test_sample_result_does_not_depend_on_its_batch():
    q, k, v = (torch.randn(3, 2, 40, 8) for _ in range(3))
    q[1] *= 10  # a very different neighbour changes any batch-wide pinv scaling
    mask = prefix_mask(40, [40, 33, 21])
    together = ops.landmark_attention(q, k, v, num_landmarks=8, key_padding_mask=mask)
    for b in range(3):
        alone = ops.landmark_attention(q[b:b + 1], k[b:b + 1], v[b:b + 1], num_landmarks=8,
                                       key_padding_mask=mask[b:b + 1])
        torch.testing.assert_close(together[b:b + 1], alone, atol=1e-6, rtol=1e-6)


def test_padding_content_does_not_leak():
    q, k, v = (torch.randn(1, 2, 30, 8) for _ in range(3))
    mask = prefix_mask(30, [19])
    base = ops.landmark_attention(q, k, v, num_landmarks=6, key_padding_mask=mask)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[:, :, 19:] = torch.randn_like(t[:, :, 19:]) * 100
    other = ops.landmark_attention(q2, k2, v2, num_landmarks=6, key_padding_mask=mask)
    torch.testing.assert_close(base[:, :, :19], other[:, :, :19], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    q, k, v = (torch.randn(2, 2, 33, 8) for _ in range(3))
    out = ops.landmark_attention(q.to(dtype), k.to(dtype), v.to(dtype), num_landmarks=4)
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = landmark_reference(q.to(dtype).float(), k.to(dtype).float(), v.to(dtype).float(), 4, 6)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), expected, atol=4 * eps, rtol=4 * eps)


def test_registered_as_one_custom_op():
    q = torch.randn(1, 2, 10, 4)

    class M(torch.nn.Module):
        def forward(self, q):
            return ops.landmark_attention(q, q, q, num_landmarks=3)

    graph = torch.export.export(M(), (q,)).graph
    targets = [n.target for n in graph.nodes if n.op == "call_function"]
    assert targets == [torch.ops.seo.landmark_attention.default]


def test_weights_reproduce_the_output():
    q, k, v = (torch.randn(2, 2, 21, 8) for _ in range(3))
    mask = prefix_mask(21, [21, 9])
    w = ops.landmark_attention_weights(q, k, num_landmarks=5, key_padding_mask=mask)
    out = ops.landmark_attention(q, k, v, num_landmarks=5, key_padding_mask=mask)
    torch.testing.assert_close(w @ v, out, atol=1e-5, rtol=1e-5)
