"""Task heads: a task model's head tensors, and the sequence-classification head the zoo carries.

BERT's head is a linear layer on the pooler's output; RoFormer's, Longformer's and Nystromformer's
a dense layer on the first token, an activation, and an output layer. Any other head (masked-LM,
question answering, ...) is refused unless the caller drops it (encoder_only).
"""

from __future__ import annotations

from seo_export.convert.common import Checkpoint, Mapping, NotRepresentable

#: First component of a task model's head tensors -> what the head is.
HEADS = {"classifier": "classification head", "cls": "pre-training / masked-LM head", "lm_head": "masked-LM head",
         "qa_outputs": "question-answering head", "sequence_summary": "multiple-choice summary"}
SEQUENCE_CLASSIFICATION = "ForSequenceClassification"


def describe(heads) -> str:
    return ", ".join(f"{HEADS.get(h, 'task head')} ({h}.*)" for h in heads)


def split_heads(checkpoint: Checkpoint, prefix: str) -> tuple[dict, dict[str, list[str]]]:
    """(encoder tensors without the task model's prefix, head name -> its tensors)."""
    tensors = checkpoint.tensors
    if not any(name.startswith(prefix) for name in tensors):
        return tensors, {}  # a base model: every tensor is the encoder's
    heads: dict[str, list[str]] = {}
    for name in tensors:
        if not name.startswith(prefix):
            heads.setdefault(name.split(".")[0], []).append(name)
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}, heads


def is_sequence_classifier(checkpoint: Checkpoint, heads: dict) -> bool:
    architectures = checkpoint.config.get("architectures") or []
    return set(heads) == {"classifier"} and any(str(a).endswith(SEQUENCE_CLASSIFICATION) for a in architectures)


def check_heads(checkpoint: Checkpoint, heads: dict) -> None:
    """Refuse every head but sequence classification, pointing at encoder_only."""
    if heads and not is_sequence_classifier(checkpoint, heads):
        architecture = "/".join(checkpoint.config.get("architectures") or ["task model"])
        raise NotRepresentable(f"it is a {architecture} with a {describe(heads)}, which the zoo cannot represent "
                               "(it has sequence-classification heads only); pass --encoder-only "
                               "(encoder_only=True) to convert the encoder alone and drop the head")


def num_labels(checkpoint: Checkpoint, out_weight) -> int:
    labels = int(out_weight.shape[0])
    named = checkpoint.config.get("id2label")
    if isinstance(named, dict) and len(named) != labels:
        raise NotRepresentable(f"config.json names {len(named)} labels (id2label) but the classifier has {labels} "
                               "outputs: the config and the weights disagree")
    return labels


def take_classifier(m: Mapping, checkpoint: Checkpoint, head_activation: str) -> dict:
    """Map the classification head; returns the config fields it needs (num_labels, classifier_activation)."""
    if head_activation == "pooler":
        out = "classifier"
        m.take_module("classifier.out_proj", "classifier", "BERT's classifier, on pooler_output")
    else:
        out = "classifier.out_proj"
        m.take_module("classifier.dense", "classifier.dense", f"on the first token, then {head_activation}")
        m.take_module("classifier.out_proj", "classifier.out_proj")
    if f"{out}.weight" not in m.tensors:
        raise NotRepresentable(f"the checkpoint has no tensor {out}.weight, which the classification head needs")
    return {"num_labels": num_labels(checkpoint, m.tensors[f"{out}.weight"]), "classifier_activation": head_activation}
