"""Model-level invariants of SEOSpecificTransformer across every attention x encoding variant."""

import itertools

import pytest
import torch

from seo_export import SEOSpecificTransformer, TransformerConfig
from seo_export.models.build import build_model

ATTENTIONS = ("standard", "local", "sparse", "relative")
ENCODINGS = ("sinusoidal", "learned", "relative", "rotary")


def small_config(attention="standard", positional="sinusoidal", **changes) -> TransformerConfig:
    base = dict(hidden_size=32, num_layers=2, num_heads=4, vocab_size=50, intermediate_size=64,
                attention_type=attention, positional_encoding_type=positional, attention_window_size=6,
                attention_num_landmarks=4, attention_max_relative_position=5,
                positional_encoding_max_relative_position=5, positional_encoding_max_len=64)
    base.update(changes)
    return TransformerConfig(**base)


def model_for(attention, positional, **changes):
    model = build_model(small_config(attention, positional, **changes), seed=1)
    with torch.no_grad():  # give relative tables visible effect
        for name, p in model.named_parameters():
            if name.endswith(("rel_key", "rel_value", "positional.bias")):
                p.normal_(std=0.5)
    return model


def ids(batch, seq, seed=0):
    return torch.randint(1, 50, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("attention,positional", itertools.product(ATTENTIONS, ENCODINGS))
def test_every_variant_runs_and_pads_cleanly(attention, positional):
    model = model_for(attention, positional)
    x = ids(3, 19)
    mask = torch.ones_like(x)
    mask[1, 12:] = 0
    mask[2, :] = 0  # a fully padded sample
    with torch.no_grad():
        out = model(x, mask, output_attentions=True, output_hidden_states=True)
        assert out["last_hidden_state"].shape == (3, 19, 32) and out["pooler_output"].shape == (3, 32)
        assert len(out["hidden_states"]) == 3 and len(out["attentions"]) == 2
        assert out["attentions"][0].shape == (3, 4, 19, 19)
        for value in [out["last_hidden_state"], out["pooler_output"], *out["attentions"]]:
            assert torch.isfinite(value).all()
        # The content of padded positions never reaches real tokens.
        x2 = x.clone()
        x2[1, 12:] = ids(1, 7, seed=5)[0]
        other = model(x2, mask)
    torch.testing.assert_close(out["last_hidden_state"][1, :12], other["last_hidden_state"][1, :12],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["standard", "local", "relative"])
def test_right_padding_leaves_real_tokens_unchanged(attention):
    model = model_for(attention, "rotary")
    x = ids(1, 13)
    padded = torch.cat([x, torch.zeros(1, 6, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 13), torch.zeros(1, 6)], 1).long()
    with torch.no_grad():
        a = model(x)["last_hidden_state"]
        b = model(padded, mask)["last_hidden_state"][:, :13]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["standard", "local", "relative"])
def test_causal_future_tokens_do_not_change_the_past(attention):
    model = model_for(attention, "sinusoidal", use_causal_mask=True)
    x = ids(1, 16)
    y = x.clone()
    y[0, 10:] = ids(1, 6, seed=9)[0]
    with torch.no_grad():
        a, b = model(x)["last_hidden_state"], model(y)["last_hidden_state"]
    torch.testing.assert_close(a[:, :10], b[:, :10], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("attention", ["standard", "local", "relative"])
@pytest.mark.parametrize("positional", ["rotary", "relative"])
def test_relative_encodings_see_only_relative_positions(attention, positional):
    """The same tokens shifted right under left padding give the same outputs."""
    model = model_for(attention, positional)
    x = ids(1, 11)
    shifted = torch.cat([torch.zeros(1, 5, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 5), torch.ones(1, 11)], 1).long()
    with torch.no_grad():
        a = model(x)["last_hidden_state"]
        b = model(shifted, mask)["last_hidden_state"][:, 5:]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_absolute_encodings_do_not_have_that_property():
    model = model_for("standard", "sinusoidal")
    x = ids(1, 11)
    shifted = torch.cat([torch.zeros(1, 5, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 5), torch.ones(1, 11)], 1).long()
    with torch.no_grad():
        a, b = model(x)["last_hidden_state"], model(shifted, mask)["last_hidden_state"][:, 5:]
    assert (a - b).abs().max() > 1e-3


def test_sinusoidal_works_past_max_len_and_learned_refuses():
    sinusoidal = model_for("local", "sinusoidal", positional_encoding_max_len=16)
    with torch.no_grad():
        assert torch.isfinite(sinusoidal(ids(1, 40))["last_hidden_state"]).all()
    learned = model_for("local", "learned", positional_encoding_max_len=16)
    with pytest.raises(ValueError, match="exceeds the learned positional encoding's max_len 16"):
        learned(ids(1, 17))


def test_sinusoidal_table_values():
    from seo_export.models.positional.absolute import sinusoid_table

    table = sinusoid_table(torch.arange(3), 4)
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0],
                             [0.8414710, 0.5403023, 0.0099998, 0.9999500],
                             [0.9092974, -0.4161468, 0.0199987, 0.9998000]])
    torch.testing.assert_close(table, expected, atol=1e-6, rtol=0)


def test_relative_encoding_bias_is_shared_across_layers():
    model = model_for("standard", "relative")
    tables = [n for n, _ in model.named_parameters() if n.endswith("positional.bias")]
    assert tables == ["embeddings.positional.bias"]


def test_dropout_only_in_training():
    model = build_model(small_config(dropout_rate=0.3, attention_dropout=0.3))
    x = ids(2, 9)
    with torch.no_grad():
        assert torch.equal(model(x)["last_hidden_state"], model(x)["last_hidden_state"])
        model.train()
        assert not torch.equal(model(x)["last_hidden_state"], model(x)["last_hidden_state"])


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_gradient_checkpointing_gives_the_same_gradients(attention):
    x = ids(2, 12)
    grads = []
    for checkpointing in (False, True):
        model = build_model(small_config(attention, dropout_rate=0.0, attention_dropout=0.0,
                                         gradient_checkpointing=checkpointing), seed=3).train()
        model(x)["last_hidden_state"].pow(2).mean().backward()
        grads.append(model.layers[0].attention.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_mixed_precision_trains_under_autocast():
    model = build_model(small_config("local", use_mixed_precision=True, dropout_rate=0.0)).train()
    seen = []
    model.layers[0].intermediate.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = model(ids(2, 12))["last_hidden_state"]
    assert seen == [torch.bfloat16]  # autocast on CPU; layer norms stay float32
    out.float().pow(2).mean().backward()
    assert torch.isfinite(model.layers[0].intermediate.weight.grad).all()


def test_attention_dropout_reaches_local_and_sparse_in_training():
    for attention in ("local", "sparse"):
        model = build_model(small_config(attention, dropout_rate=0.0, attention_dropout=0.5)).train()
        x = ids(1, 12)
        assert not torch.equal(model(x)["last_hidden_state"], model(x)["last_hidden_state"])


def test_bad_inputs_are_named():
    model = build_model(small_config())
    with pytest.raises(ValueError, match="input_ids must be"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model(ids(2, 5), torch.ones(2, 4))


def test_seeded_builds_are_identical():
    a, b = build_model(small_config(), seed=7), build_model(small_config(), seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert isinstance(a, SEOSpecificTransformer)
