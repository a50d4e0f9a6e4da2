"""RoFormer: rotary attention on interleaved pairs, no absolute positions, no pooler.

transformers rotates pairs (2i, 2i + 1) of each head, the zoo pairs (i, i + d/2), both by angle
position / 10000^(2i/d). Permuting the rows of the q and k projections within each head by
[0, 2, ..., d-2, 1, 3, ..., d-1] turns one into the other; q . k is unchanged by a permutation
applied to both, so the attention is identical.
"""

from __future__ import annotations

import torch

from seo_export.convert.bert import check_encoder, encoder_config, encoder_notes, take_encoder, take_pooler
from seo_export.convert.common import Checkpoint, Mapping, NotRepresentable, activation

MODEL_TYPE = "roformer"
PREFIX = "roformer."
TABLE = "encoder.embed_positions.weight"


def half_split_rows(num_heads: int, head_dim: int):
    """A q/k weight or bias, rows regrouped per head from interleaved pairs to half-split ones."""
    order = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    rows = (torch.arange(num_heads)[:, None] * head_dim + order[None, :]).flatten()
    # A tensor of another size is left as it is, for the shape check to name.
    return lambda tensor: tensor[rows] if tensor.shape[0] == len(rows) else tensor


def check_sinusoid_table(table: torch.Tensor, head_dim: int) -> None:
    """The saved table must be the one RoFormer computes (base 10000), which the zoo recomputes."""
    if table.dim() != 2 or table.shape[1] != head_dim:
        raise NotRepresentable(f"{TABLE} has shape {tuple(table.shape)} but config.json implies head dim "
                               f"{head_dim}: the config and the weights disagree")
    positions = torch.arange(table.shape[0], dtype=torch.float64)[:, None]
    angles = positions / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    expected = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if not torch.allclose(table.double(), expected, rtol=0, atol=1e-6):
        raise NotRepresentable(f"{TABLE} is not RoFormer's sinusoidal table with base 10000, the only rotary "
                               "angles the zoo computes")


def convert(checkpoint: Checkpoint, tensors: dict) -> tuple:
    causal = check_encoder(checkpoint)
    if checkpoint.setting("rotary_value", False):
        raise NotRepresentable("rotary_value cannot be represented: the zoo rotates only queries and keys")
    hidden = checkpoint.setting("hidden_size")
    embedding_size = checkpoint.setting("embedding_size", None) or hidden
    if embedding_size != hidden:
        raise NotRepresentable(f"embedding_size {embedding_size} != hidden_size {hidden} cannot be represented: "
                               "the zoo has no embedding projection")
    pad = checkpoint.setting("pad_token_id", 0)
    config = encoder_config(checkpoint, pad, causal, attention_type="standard", positional_encoding_type="rotary",
                            positional_encoding_max_len=checkpoint.setting("max_position_embeddings", 1536))
    m = Mapping(tensors)
    take_encoder(m, config.num_layers,
                 qk_how="rows permuted within each head to [0, 2, ..., d-2, 1, 3, ..., d-1]: interleaved rotary "
                        "pairs (2i, 2i+1) -> the zoo's half-split pairs (i, i+d/2)",
                 qk_transform=half_split_rows(config.num_heads, config.head_dim))
    if TABLE in tensors:
        check_sinusoid_table(tensors[TABLE], config.head_dim)
        m.drop([TABLE], "RoFormer's sinusoidal table (base 10000): the zoo computes the same rotary angles")
    take_pooler(m, config.hidden_size, "RoFormer has none")
    encoder_notes(m, config, pad)
    return config, m


def classifier_activation(checkpoint: Checkpoint) -> str:
    return activation(checkpoint)  # RoFormerClassificationHead: dense, hidden_act, out_proj
