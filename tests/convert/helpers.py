"""Tiny random transformers models of each family (hidden 32, 2 layers), saved as checkpoints, and
a right-padded batch to compare on. Weights are redrawn so attention is far from uniform: with
transformers' 0.02 init a miswired q/k or position table moves the output by little."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
            max_position_embeddings=64)
FAMILIES = {  # model_type -> (config class, base model class, settings beyond TINY)
    "bert": ("BertConfig", "BertModel", {}),
    "roformer": ("RoFormerConfig", "RoFormerModel", {}),
    "longformer": ("LongformerConfig", "LongformerModel", {"attention_window": 4}),
    # num_landmarks == segment_means_seq_len, as in every published checkpoint: full softmax attention.
    "nystromformer": ("NystromformerConfig", "NystromformerModel",
                      {"conv_kernel_size": 5, "num_landmarks": 16, "segment_means_seq_len": 16}),
}
LENGTHS = (13, 9, 1)  # right padding: a full row, a padded one, a single token


@torch.no_grad()
def sharpen(model) -> None:
    unit = TINY["hidden_size"] ** -0.5
    for name, p in model.named_parameters():
        if "embed_positions" in name:  # RoFormer's sinusoidal table is fixed
            continue
        if "LayerNorm.weight" in name:
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.normal_(std=0.1)
        elif ".query" in name or ".key" in name:
            p.normal_(std=2 * unit)
        elif "embeddings" in name:
            p.normal_(std=1.0)
        else:
            p.normal_(std=unit)


def tiny_model(family: str, architecture: str | None = None, **settings):
    import transformers

    config_class, base_class, extra = FAMILIES[family]
    config = getattr(transformers, config_class)(**{**TINY, **extra, **settings})
    torch.manual_seed(0)
    model = getattr(transformers, architecture or base_class)(config).eval()
    sharpen(model)
    return model


def save_tiny(directory: Path, family: str, architecture: str | None = None, **settings):
    model = tiny_model(family, architecture, **settings)
    model.save_pretrained(directory)  # safetensors
    return directory, model


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def padded_batch(pad_token_id: int, with_types: bool = True):
    """input_ids (no pad id among valid tokens), attention_mask, token_type_ids; right-padded."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, TINY["vocab_size"], (len(LENGTHS), max(LENGTHS)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(LENGTHS):
        mask[row, :length] = 1
        ids[row, length:] = pad_token_id
    types = torch.randint(0, 2, ids.shape, generator=generator) * mask if with_types else torch.zeros_like(ids)
    return ids, mask, types


def hf_outputs(model, ids, mask, types):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    return out.last_hidden_state, getattr(out, "pooler_output", None)
