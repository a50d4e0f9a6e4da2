"""The features real checkpoints need, against references written out here: the feed-forward's tanh
GELU, Nystromformer's value convolution, and the classification head (logits)."""

import math

import pytest
import torch

from seo_export import TransformerConfig
from seo_export.models.build import build_model

CONFIG = TransformerConfig(hidden_size=32, num_layers=1, num_heads=4, vocab_size=50, intermediate_size=64,
                           dropout_rate=0.0, attention_dropout=0.0, positional_encoding_type="learned",
                           positional_encoding_max_len=64)


def inputs():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (2, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def tanh_gelu(x):  # transformers' gelu_new, written out
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def test_gelu_tanh_is_the_tanh_formula():
    model = build_model(CONFIG.replace(hidden_act="gelu_tanh"), init="peaked")
    x = torch.randn(4, 64, dtype=torch.float64)
    assert (model.layers[0].activation(x) - tanh_gelu(x)).abs().max() < 1e-12
    assert (torch.nn.functional.gelu(x) - tanh_gelu(x)).abs().max() > 1e-4  # the two GELUs differ


def value_conv_reference(weight, v):
    """out[b, h, s] = sum_t weight[h, t] * v[b, h, s + t - k // 2], zero outside the sequence."""
    heads, kernel = weight.shape[0], weight.shape[2]
    out = torch.zeros_like(v)
    for t in range(kernel):
        shift = t - kernel // 2
        for s in range(v.shape[2]):
            if 0 <= s + shift < v.shape[2]:
                out[:, :, s] += weight[:, 0, t, 0].view(1, heads, 1) * v[:, :, s + shift]
    return out


@pytest.mark.parametrize("attention", ["standard", "local", "sparse", "relative"])
def test_value_conv_adds_the_depthwise_convolution(attention):
    config = CONFIG.replace(attention_type=attention, attention_window_size=4, attention_num_landmarks=4,
                            attention_value_conv_kernel=5)
    model = build_model(config, init="peaked")
    attn = model.layers[0].attention
    x = torch.randn(2, 11, 32)
    mask = torch.ones(2, 11, dtype=torch.bool)
    with torch.no_grad():
        got, _ = attn(x, mask)
        conv, attn.value_conv = attn.value_conv, None
        plain, _ = attn(x, mask)
        v = attn._heads(attn.v_proj(x))
        expected = value_conv_reference(conv.weight, v).transpose(1, 2).reshape(2, 11, 32) @ attn.out_proj.weight.T
    assert (got - plain - expected).abs().max() < 1e-5
    assert expected.abs().max() > 0.1


@pytest.mark.parametrize("activation", ["pooler", "tanh", "gelu", "gelu_tanh"])
def test_logits_come_from_the_first_token(activation):
    model = build_model(CONFIG.replace(num_labels=3, classifier_activation=activation), init="peaked")
    ids, mask = inputs()
    with torch.no_grad():
        out = model(ids, mask)
        head = model.classifier
        if activation == "pooler":
            expected = out["pooler_output"] @ head.out_proj.weight.T + head.out_proj.bias
        else:
            act = {"tanh": torch.tanh, "gelu": torch.nn.functional.gelu, "gelu_tanh": tanh_gelu}[activation]
            first = out["last_hidden_state"][:, 0]
            expected = act(first @ head.dense.weight.T + head.dense.bias) @ head.out_proj.weight.T + head.out_proj.bias
    assert out["logits"].shape == (2, 3)
    assert (out["logits"] - expected).abs().max() < 1e-5


def test_no_head_no_logits():
    model = build_model(CONFIG)
    assert model.classifier is None and "logits" not in model(*inputs())
