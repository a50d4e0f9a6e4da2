"""Converted checkpoints compute what transformers computes: eager FP32 (and FP64) on valid tokens of a
right-padded batch, the pooler where both have one, and the exported ONNX file on ONNX Runtime."""

import pytest
import torch

from seo_export.convert import convert_hf
from tests.convert.helpers import FAMILIES, hf_outputs, padded_batch, save_tiny, tiny_model

FP32_ATOL = 1e-5


def compare(family, hf, zoo, with_types=True, dtype=torch.float32):
    ids, mask, types = padded_batch(hf.config.pad_token_id, with_types)
    expected, expected_pooled = hf_outputs(hf.to(dtype), ids, mask, types)
    with torch.no_grad():
        got = zoo.to(dtype)(ids, mask, types)
    valid = mask.bool()
    hidden_error = (got["last_hidden_state"][valid] - expected[valid]).abs().max().item()
    pooled_error = None if expected_pooled is None else (got["pooler_output"] - expected_pooled).abs().max().item()
    return hidden_error, pooled_error, got


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_zoo_matches_transformers_fp32(family, checkpoint):
    path, hf = checkpoint(family)
    hidden, pooled, got = compare(family, hf, convert_hf(path).model(), with_types=family != "longformer")
    assert hidden < FP32_ATOL
    if family in ("roformer", "nystromformer"):  # no pooler: the zoo's is zero, never a made-up value
        assert pooled is None and torch.count_nonzero(got["pooler_output"]) == 0
    else:
        assert pooled < FP32_ATOL


# BERT agrees to float64 rounding. RoFormer and Longformer to float32 rounding in one step each: the
# zoo computes rotary angles in float32 (positions * inv_freq), and transformers' Longformer takes
# its softmax in float32 whatever the model's dtype.
@pytest.mark.parametrize("family, atol", [("bert", 1e-12), ("roformer", 1e-6), ("longformer", 1e-6)])
def test_zoo_matches_transformers_fp64(family, atol, checkpoint, monkeypatch):
    from seo_export import ops

    # The seo op takes float32/16 only; its reference (the op's definition) runs float64.
    monkeypatch.setattr(ops, "local_window_attention",
                        lambda *args, backend="reference", **kwargs: ops.local_window_attention_reference(*args, **kwargs))
    path, hf = checkpoint(family)
    hidden, pooled, _ = compare(family, tiny_model(family), convert_hf(path).model(), family != "longformer",
                                torch.float64)
    assert hidden < atol and (pooled is None or pooled < atol)


@pytest.mark.parametrize("family, architecture, base", [
    ("bert", "BertForSequenceClassification", "bert"),
    ("longformer", "LongformerForSequenceClassification", "longformer"),
])
def test_encoder_only_converts_a_task_models_encoder(family, architecture, base, checkpoint):
    path, hf = checkpoint(family, architecture)
    conversion = convert_hf(path, encoder_only=True)
    encoder = getattr(hf, base)  # without global attention for Longformer: what the zoo computes
    hidden, pooled, got = compare(family, encoder, conversion.model(), with_types=family != "longformer")
    assert hidden < FP32_ATOL
    if pooled is not None:
        assert pooled < FP32_ATOL
    else:  # LongformerForSequenceClassification has no pooler
        assert torch.count_nonzero(got["pooler_output"]) == 0
    dropped = " ".join(group["why"] for group in conversion.record["dropped"])
    assert "classification head (classifier)" in dropped


def test_a_causal_bert_converts_to_a_causal_zoo_model(tmp_path):
    path, hf = save_tiny(tmp_path / "decoder", "bert", is_decoder=True)
    conversion = convert_hf(path)
    assert conversion.config.use_causal_mask
    hidden, pooled, _ = compare("bert", hf, conversion.model())
    assert hidden < FP32_ATOL and pooled < FP32_ATOL


def test_sharded_pytorch_and_legacy_checkpoints_convert_alike(tmp_path, checkpoint):
    from safetensors.torch import load_file, save_file

    path, hf = checkpoint("bert")
    reference = convert_hf(path).state_dict
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    legacy = tmp_path / "legacy"  # TF-era LayerNorm.gamma / beta, in a torch file
    legacy.mkdir()
    (legacy / "config.json").write_bytes((path / "config.json").read_bytes())
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in load_file(path / "model.safetensors").items()}
    torch.save(state, legacy / "pytorch_model.bin")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_bytes((path / "config.json").read_bytes())
    save_file({k: v.half() for k, v in load_file(path / "model.safetensors").items()}, half / "model.safetensors")
    for directory in (sharded, legacy):
        state = convert_hf(directory).state_dict
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
    upcast = convert_hf(half)  # float16 weights: upcast exactly, recorded
    assert all(t.dtype == torch.float32 for t in upcast.state_dict.values())
    assert upcast.record["source"]["dtypes"] == ["float16"]


@pytest.mark.parametrize("family, sabotage", [
    ("roformer", "q/k rows not permuted"),
    ("longformer", "position table from row pad_token_id"),
])
def test_a_mapping_mistake_leaves_tolerance(family, sabotage, checkpoint):
    """The comparisons above can fail: each mapping step they rely on, undone, moves the output."""
    from safetensors.torch import load_file

    path, hf = checkpoint(family)
    conversion = convert_hf(path)
    source = load_file(path / "model.safetensors")
    state = conversion.state_dict
    if family == "roformer":
        for name in ("query", "key"):
            state[f"layers.0.attention.{name[0]}_proj.weight"] = source[f"encoder.layer.0.attention.self.{name}.weight"]
    else:
        pad = hf.config.pad_token_id
        state["embeddings.positional.embedding.weight"] = source["embeddings.position_embeddings.weight"][pad:-1]
    hidden, _, _ = compare(family, hf, conversion.model(), with_types=False)
    assert hidden > 100 * FP32_ATOL


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_onnx_matches_transformers(family, checkpoint, tmp_path):
    from seo_export.backends.ort_runner import create_session
    from seo_export.export import export_onnx

    path, hf = checkpoint(family)
    result = export_onnx(convert_hf(path).model(), tmp_path / "model.onnx")
    ids, mask, types = padded_batch(hf.config.pad_token_id, with_types=False)  # the graph has no token types
    expected, expected_pooled = hf_outputs(hf, ids, mask, types)
    hidden, pooled = create_session(result.path, providers=["CPUExecutionProvider"]).run(
        ["last_hidden_state", "pooler_output"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    valid = mask.bool().numpy()
    assert abs(hidden[valid] - expected.numpy()[valid]).max() < 1e-4
    if expected_pooled is not None:
        assert abs(pooled - expected_pooled.numpy()).max() < 1e-4
