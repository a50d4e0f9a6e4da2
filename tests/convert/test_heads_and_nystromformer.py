"""Sequence-classification heads and Nystromformer, against transformers: eager zoo and the exported
graph on ONNX Runtime give transformers' logits; each piece the comparison relies on (the value
convolution, the tanh GELU, the head's activation) is seen to move the result when undone."""

import pytest
import torch

from seo_export.convert import convert_hf
from tests.convert.helpers import padded_batch, save_tiny

FP32_ATOL = 1e-5
CLASSIFIERS = [("bert", "BertForSequenceClassification"), ("roformer", "RoFormerForSequenceClassification"),
               ("nystromformer", "NystromformerForSequenceClassification")]


def logits(model, ids, mask, types, zoo: bool):
    with torch.no_grad():
        if zoo:
            return model(ids, mask, types)["logits"]
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits


@pytest.mark.parametrize("family, architecture", CLASSIFIERS)
def test_classifier_logits_match_transformers(family, architecture, checkpoint):
    path, hf = checkpoint(family, architecture)
    conversion = convert_hf(path)
    assert conversion.config.num_labels == hf.config.num_labels == 2
    ids, mask, types = padded_batch(hf.config.pad_token_id)
    expected = logits(hf, ids, mask, types, zoo=False)
    assert (logits(conversion.model(), ids, mask, types, zoo=True) - expected).abs().max() < FP32_ATOL
    assert expected.std() > 0.1  # logits that say something, so a wrong head shows


@pytest.mark.parametrize("family, architecture", CLASSIFIERS)
def test_exported_logits_match_transformers(family, architecture, checkpoint, tmp_path):
    from seo_export.backends.ort_runner import create_session
    from seo_export.export import export_onnx

    path, hf = checkpoint(family, architecture)
    result = export_onnx(convert_hf(path).model(), tmp_path / "model.onnx")
    ids, mask, types = padded_batch(hf.config.pad_token_id, with_types=False)
    session = create_session(result.path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state", "pooler_output", "logits"]
    (got,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert abs(got - logits(hf, ids, mask, types, zoo=False).numpy()).max() < 1e-4


def test_nystromformer_matches_transformers_in_float64(checkpoint, monkeypatch):
    path, hf = checkpoint("nystromformer")
    ids, mask, types = padded_batch(hf.config.pad_token_id)
    with torch.no_grad():
        expected = hf.double()(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = convert_hf(path).model().double()(ids, mask, types)["last_hidden_state"]
    hf.float()
    valid = mask.bool()
    assert (got[valid] - expected[valid]).abs().max() < 1e-12


def test_nystromformer_landmark_branch_matches_transformers(tmp_path):
    """num_landmarks != segment_means_seq_len: transformers' landmark attention, one head, unpadded, at
    S == segment_means_seq_len, the only inputs it accepts and scales per matrix."""
    path, hf = save_tiny(tmp_path / "landmarks", "nystromformer", num_landmarks=4, num_attention_heads=1)
    conversion = convert_hf(path)
    assert conversion.config.attention_type == "sparse" and conversion.config.attention_num_landmarks == 4
    ids = torch.randint(3, 100, (1, hf.config.segment_means_seq_len), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = conversion.model()(ids, mask)["last_hidden_state"]
    assert (got - expected).abs().max() < FP32_ATOL


@pytest.mark.parametrize("sabotage", ["value convolution dropped", "exact GELU for gelu_new",
                                      "classifier activation exact GELU"])
def test_nystromformer_pieces_are_seen(sabotage, checkpoint):
    """Each Nystromformer piece moves the output by far more than the tolerance when left out."""
    from seo_export.models.build import build_model

    path, hf = checkpoint("nystromformer", "NystromformerForSequenceClassification")
    conversion = convert_hf(path)
    config, state = conversion.config, dict(conversion.state_dict)
    if sabotage == "value convolution dropped":
        config = config.replace(attention_value_conv_kernel=0)
        state = {k: v for k, v in state.items() if "value_conv" not in k}
    elif sabotage == "exact GELU for gelu_new":
        config = config.replace(hidden_act="gelu")
    else:
        config = config.replace(classifier_activation="gelu")
    model = build_model(config)
    model.load_state_dict(state)
    ids, mask, types = padded_batch(hf.config.pad_token_id)
    error = (logits(model.eval(), ids, mask, types, zoo=True) - logits(hf, ids, mask, types, zoo=False)).abs().max()
    assert error > 10 * FP32_ATOL
