"""What the zoo cannot represent exactly is refused with what and why, and nothing is written; so is
input that is not a checkpoint."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from seo_export.convert import convert_hf
from seo_export.errors import UsageError
from tests.convert.helpers import copy_checkpoint


def edited(checkpoint, tmp_path, family, architecture=None, settings=None, tensors=None):
    """A copy of the family's tiny checkpoint with config.json settings and tensors changed."""
    source, _ = checkpoint(family, architecture)
    path = copy_checkpoint(source, tmp_path / "in")
    if settings:
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, **settings}))
    if tensors:
        state = load_file(path / "model.safetensors")
        tensors(state)
        save_file(state, path / "model.safetensors")
    return path


def assert_refused(path, tmp_path, *fragments, **kwargs):
    before = sorted(tmp_path.iterdir())
    with pytest.raises(UsageError) as caught:
        convert_hf(path, tmp_path / "out", **kwargs)
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    assert sorted(tmp_path.iterdir()) == before  # no output, no temporary left beside it


def table_off_by_one(state):
    state["encoder.embed_positions.weight"] = torch.roll(state["encoder.embed_positions.weight"], 1, 0)


@pytest.mark.parametrize("family, settings, fragments", [
    ("bert", {"hidden_act": "gelu_fast"}, ("hidden_act 'gelu_fast'", "gelu, gelu_new")),
    ("bert", {"hidden_act": "relu"}, ("hidden_act 'relu'",)),
    ("bert", {"position_embedding_type": "relative_key"}, ("position_embedding_type 'relative_key'",)),
    ("bert", {"position_embedding_type": "relative_key_query"}, ("relative_key_query",)),
    ("bert", {"add_cross_attention": True}, ("add_cross_attention", "no cross-attention")),
    ("roformer", {"rotary_value": True}, ("rotary_value", "only queries and keys")),
    ("roformer", {"embedding_size": 16}, ("embedding_size 16 != hidden_size 32",)),
    ("roformer", {"hidden_act": "silu"}, ("hidden_act 'silu'",)),
    ("nystromformer", {"conv_kernel_size": 4}, ("conv_kernel_size 4", "odd kernel")),
    ("nystromformer", {"num_landmarks": 4}, ("landmark attention with 4 heads", "one maximum over all heads")),
    ("nystromformer", {"num_landmarks": 5, "num_attention_heads": 1}, ("not a multiple of num_landmarks 5",)),
    ("nystromformer", {"num_landmarks": 4, "inv_coeff_init_option": True}, ("inv_coeff_init_option",)),
    ("longformer", {"attention_window": [4, 8]}, ("per-layer attention windows [4, 8]",)),
    ("longformer", {"attention_window": [4]}, ("1 entries for 2 layers",)),
    ("longformer", {"attention_window": 5}, ("attention_window 5", "even")),
    ("longformer", {"pad_token_id": None}, ("pad_token_id None",)),
    ("longformer", {"max_position_embeddings": 2}, ("max_position_embeddings 2 leaves no positions",)),
    ("bert", {"intermediate_size": 48}, ("has shape (64, 32) but config.json implies (48, 32)",)),
    ("bert", {"num_attention_heads": 5}, ("no valid zoo config", "divisible")),
    ("bert", {"num_hidden_layers": 3}, ("has no tensor encoder.layer.2.",)),
    ("roformer", {"hidden_size": 64, "embedding_size": 64}, ("has shape (64, 8) but config.json implies head dim 16",)),
])
def test_unrepresentable_settings_are_refused(family, settings, fragments, checkpoint, tmp_path):
    path = edited(checkpoint, tmp_path, family, settings=settings)
    assert_refused(path, tmp_path, "cannot convert", *fragments)


@pytest.mark.parametrize("family, change, fragments", [
    ("bert", lambda s: s.pop("encoder.layer.1.output.dense.bias"),
     ("has no tensor encoder.layer.1.output.dense.bias",)),
    ("bert", lambda s: s.update({"encoder.layer.0.adapter.weight": torch.zeros(2)}),
     ("it has 1 tensor(s)", "cannot be mapped", "encoder.layer.0.adapter.weight")),
    ("roformer", table_off_by_one, ("encoder.embed_positions.weight", "base 10000")),
])
def test_unrepresentable_tensors_are_refused(family, change, fragments, checkpoint, tmp_path):
    assert_refused(edited(checkpoint, tmp_path, family, tensors=change), tmp_path, "cannot convert", *fragments)


@pytest.mark.parametrize("family, architecture, refusal, dropped", [
    ("bert", "BertForPreTraining", "pre-training / masked-LM head (cls.*)", "pre-training / masked-LM head"),
    ("bert", "BertForQuestionAnswering", "question-answering head (qa_outputs.*)", "question-answering head"),
    ("longformer", "LongformerForMaskedLM", "masked-LM head (lm_head.*)", "masked-LM head"),
    # Its head converts, but its logits depend on global attention the zoo does not have.
    ("longformer", "LongformerForSequenceClassification", "global attention", "classification head"),
])
def test_a_task_head_is_refused_without_encoder_only(family, architecture, refusal, dropped, checkpoint, tmp_path):
    path = edited(checkpoint, tmp_path, family, architecture)
    assert_refused(path, tmp_path, refusal, architecture, "--encoder-only")
    conversion = convert_hf(path, encoder_only=True)
    assert any(dropped in group["why"] for group in conversion.record["dropped"])


def not_a_checkpoint(path):
    path.mkdir()


def weights_missing(path):
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "bert"}')


def weights_corrupt(path):
    weights_missing(path)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")


def config_corrupt(path):
    path.mkdir()
    (path / "config.json").write_text("{oops")


def unknown_model_type(path):
    weights_missing(path)
    (path / "config.json").write_text('{"model_type": "gpt2"}')
    save_file({"wte.weight": torch.zeros(2, 2)}, path / "model.safetensors")


def no_model_type(path):
    unknown_model_type(path)
    (path / "config.json").write_text("{}")


@pytest.mark.parametrize("make, fragments", [
    (lambda path: None, ("is not a directory", "downloads nothing")),
    (not_a_checkpoint, ("is not a Hugging Face checkpoint: it has no config.json",)),
    (config_corrupt, ("cannot read", "config.json")),
    (weights_missing, ("has no weights: expected model.safetensors",)),
    (weights_corrupt, ("cannot read checkpoint", "model.safetensors")),
    (unknown_model_type, ("model_type 'gpt2' is not supported", "bert, longformer, nystromformer, roformer")),
    (no_model_type, ("has no model_type",)),
])
def test_bad_input_is_one_line_and_writes_nothing(make, fragments, tmp_path):
    make(tmp_path / "in")
    assert_refused(tmp_path / "in", tmp_path, *fragments)
