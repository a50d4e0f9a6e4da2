"""Hugging Face checkpoints -> the zoo, exactly or not at all: ``convert_hf(path[, output_dir])``.

One small mapping module per family (bert, roformer, longformer, nystromformer), in the manner of transformers'
conversion scripts; each refuses, with what and why, a setting the zoo cannot reproduce.
"""

from __future__ import annotations

import os
from pathlib import Path

from seo_export import __version__
from seo_export.convert import bert, heads, longformer, nystromformer, roformer
from seo_export.convert.common import Checkpoint, NotRepresentable, read_checkpoint
from seo_export.convert.output import Conversion, check_output, dropped_groups, mapped_patterns, tokenizer_files
from seo_export.errors import UsageError
from seo_export.utils.files import sha256_file

FAMILIES = {family.MODEL_TYPE: family for family in (bert, roformer, longformer, nystromformer)}

__all__ = ["FAMILIES", "Conversion", "NotRepresentable", "convert_hf"]


def convert_hf(path: str | os.PathLike, output_dir: str | os.PathLike | None = None, *,
               encoder_only: bool = False, overwrite: bool = False) -> Conversion:
    """Convert a local checkpoint directory; with ``output_dir``, also write it there (atomically).

    A sequence-classification model converts with its head (a ``logits`` output); any other task
    head is refused unless ``encoder_only``, which converts the encoder and records the head as dropped.
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
        config, mapping, stripped = convert_tensors(checkpoint, family, encoder_only)
        state = mapping.check_complete(config)
    except NotRepresentable as exc:
        raise NotRepresentable(f"cannot convert {checkpoint.path}: {exc}") from None
    conversion = Conversion(config, state, record(checkpoint, mapping), tokenizer_files(checkpoint.path))
    conversion.record["source"]["encoder_prefix"] = family.PREFIX if stripped else ""
    conversion.record["tokenizer_files"] = [f.name for f in conversion.tokenizer_files]
    if output_dir is not None:
        conversion.save(output_dir, overwrite)
    return conversion


def convert_tensors(checkpoint: Checkpoint, family, encoder_only: bool):
    """(config, mapping, whether a task model's prefix was taken off): the encoder, then the head."""
    encoder, head_tensors = heads.split_heads(checkpoint, family.PREFIX)
    keep_head = bool(head_tensors) and not encoder_only
    if keep_head:
        heads.check_heads(checkpoint, head_tensors)
        head_activation = family.classifier_activation(checkpoint)  # may refuse, e.g. Longformer
        encoder = {**encoder, **{name: checkpoint.tensors[name] for name in head_tensors["classifier"]}}
    config, mapping = family.convert(checkpoint, encoder)
    if keep_head:
        config = config.replace(**heads.take_classifier(mapping, checkpoint, head_activation))
    for head, names in (head_tensors.items() if encoder_only else ()):
        mapping.dropped[f"{heads.HEADS.get(head, 'task head')} ({head}): dropped by encoder_only"] = names
    return config, mapping, encoder is not checkpoint.tensors


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
