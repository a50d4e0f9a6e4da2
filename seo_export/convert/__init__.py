"""Hugging Face checkpoints -> the zoo, exactly or not at all: ``convert_hf(path[, output_dir])``.

One small mapping module per family (bert, roformer, longformer), in the manner of transformers'
conversion scripts; each refuses, with what and why, a setting the zoo cannot reproduce.
"""

from __future__ import annotations

import os
from pathlib import Path

from seo_export import __version__
from seo_export.convert import bert, longformer, roformer
from seo_export.convert.common import Checkpoint, NotRepresentable, read_checkpoint
from seo_export.convert.output import Conversion, check_output, dropped_groups, mapped_patterns, tokenizer_files
from seo_export.errors import UsageError
from seo_export.utils.files import sha256_file

FAMILIES = {family.MODEL_TYPE: family for family in (bert, roformer, longformer)}

#: First component of a task model's head tensors -> what the head is.
HEADS = {"classifier": "classification head", "cls": "pre-training / masked-LM head", "lm_head": "masked-LM head",
         "qa_outputs": "question-answering head", "sequence_summary": "multiple-choice summary"}

__all__ = ["FAMILIES", "Conversion", "NotRepresentable", "convert_hf"]


def convert_hf(path: str | os.PathLike, output_dir: str | os.PathLike | None = None, *,
               encoder_only: bool = False, overwrite: bool = False) -> Conversion:
    """Convert a local checkpoint directory; with ``output_dir``, also write it there (atomically).

    A task model's head (e.g. BertForSequenceClassification's classifier) is refused unless
    ``encoder_only``, which converts the encoder and records the head as dropped.
    """
    if output_dir is not None:
        check_output(Path(output_dir), overwrite)  # before the slow part
    checkpoint = read_checkpoint(path)
    model_type = checkpoint.config.get("model_type")
    if model_type is None:
        raise UsageError(f"{checkpoint.path}/config.json has no model_type; convert reads "
                         f"{', '.join(sorted(FAMILIES))} checkpoints")
    if model_type not in FAMILIES:
        raise UsageError(f"{checkpoint.path}: model_type {model_type!r} is not supported; convert reads "
                         f"{', '.join(sorted(FAMILIES))}")
    family = FAMILIES[model_type]
    try:
        tensors, heads = split_heads(checkpoint, family.PREFIX, encoder_only)
        config, mapping = family.convert(checkpoint, tensors)
        for head, names in heads.items():
            mapping.dropped[f"{HEADS.get(head, 'task head')} ({head}): the zoo has no task heads yet; "
                            "dropped by encoder_only"] = names
        state = mapping.check_complete(config)
    except NotRepresentable as exc:
        raise NotRepresentable(f"cannot convert {checkpoint.path}: {exc}") from None
    conversion = Conversion(config, state, record(checkpoint, mapping), tokenizer_files(checkpoint.path))
    stripped = tensors is not checkpoint.tensors  # a task model: split_heads took its encoder's prefix off
    conversion.record["source"]["encoder_prefix"] = family.PREFIX if stripped else ""
    conversion.record["tokenizer_files"] = [f.name for f in conversion.tokenizer_files]
    if output_dir is not None:
        conversion.save(output_dir, overwrite)
    return conversion


def split_heads(checkpoint: Checkpoint, prefix: str, encoder_only: bool) -> tuple[dict, dict[str, list[str]]]:
    """(encoder tensors without the task model's prefix, head name -> its tensors)."""
    tensors = checkpoint.tensors
    if not any(name.startswith(prefix) for name in tensors):
        return tensors, {}  # a base model: every tensor is the encoder's
    heads: dict[str, list[str]] = {}
    for name in tensors:
        if not name.startswith(prefix):
            heads.setdefault(name.split(".")[0], []).append(name)
    if heads and not encoder_only:
        what = ", ".join(f"{HEADS.get(h, 'task head')} ({h}.*)" for h in heads)
        architecture = "/".join(checkpoint.config.get("architectures") or ["task model"])
        raise NotRepresentable(f"it is a {architecture} with a {what}, which the zoo cannot represent yet; pass "
                               "--encoder-only (encoder_only=True) to convert the encoder alone and drop the head")
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}, heads


def record(checkpoint: Checkpoint, mapping) -> dict:
    """conversion.json: the source, what was mapped, what was dropped and why."""
    return {
        "seo_export_version": __version__,
        "source": {
            "path": str(checkpoint.path.resolve()),
            "model_type": checkpoint.config.get("model_type"),
            "architectures": checkpoint.config.get("architectures"),
            "transformers_version": checkpoint.config.get("transformers_version"),
            "weights": {f.name: sha256_file(f) for f in checkpoint.weights},
            "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in checkpoint.tensors.values()}),
        },
        "mapped": mapped_patterns(mapping.mapped),
        "dropped": dropped_groups(mapping.dropped),
        "notes": mapping.notes,
    }
