"""BERT (``BertModel`` and the ``bert.`` encoder of its task models): the zoo is BERT, so renames only.

The layout helpers here serve RoFormer and Longformer too: transformers copies their layers from BERT.
"""

from __future__ import annotations

import torch

from seo_export.convert.common import Checkpoint, Mapping, NotRepresentable, activation, zoo_config

MODEL_TYPE = "bert"
PREFIX = "bert."  # transformers' base_model_prefix: where task models keep the encoder

#: zoo module -> transformers module, inside ``layers.i`` / ``encoder.layer.i``.
LAYER = (
    ("attention.q_proj", "attention.self.query"),
    ("attention.k_proj", "attention.self.key"),
    ("attention.v_proj", "attention.self.value"),
    ("attention.out_proj", "attention.output.dense"),
    ("attention_norm", "attention.output.LayerNorm"),
    ("intermediate", "intermediate.dense"),
    ("output", "output.dense"),
    ("output_norm", "output.LayerNorm"),
)
#: Index buffers older transformers saved; the zoo computes them.
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def check_encoder(checkpoint: Checkpoint) -> bool:
    """Refuse what a BERT-layout encoder cannot carry over; True for a causal (decoder) model."""
    activation(checkpoint)
    if checkpoint.setting("add_cross_attention", False):
        raise NotRepresentable("add_cross_attention cannot be represented: the zoo has no cross-attention")
    kind = checkpoint.setting("position_embedding_type", "absolute")
    if kind != "absolute":
        raise NotRepresentable(f"position_embedding_type {kind!r} cannot be represented: the zoo has no BERT "
                               "relative_key tables (transformers 5 dropped them too)")
    return bool(checkpoint.setting("is_decoder", False))


def encoder_config(checkpoint: Checkpoint, pad_token_id: int | None, causal: bool = False, **fields):
    """The TransformerConfig: fields every BERT-layout family reads the same way, plus the family's."""
    s = checkpoint.setting
    common = dict(
        hidden_size=s("hidden_size"), num_layers=s("num_hidden_layers"), num_heads=s("num_attention_heads"),
        vocab_size=s("vocab_size"), intermediate_size=s("intermediate_size"), hidden_act=activation(checkpoint),
        dropout_rate=s("hidden_dropout_prob", 0.1), attention_dropout=s("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=s("layer_norm_eps", 1e-12), initializer_range=s("initializer_range", 0.02),
        type_vocab_size=s("type_vocab_size", 2), pad_token_id=0 if pad_token_id is None else pad_token_id,
        use_causal_mask=causal,
    )
    return zoo_config(**{**common, **fields})


def encoder_notes(m: Mapping, config, pad_token_id: int | None) -> None:
    if pad_token_id is None:
        m.notes.append("pad_token_id is null: the zoo's pad_token_id is 0, which only marks a row of the word "
                       "table and does not change any output")
    if config.use_causal_mask:
        m.notes.append("is_decoder: converted as a causal encoder (use_causal_mask), without a cache")


def take_encoder(m: Mapping, num_layers: int, qk_how: str = "", qk_transform=None) -> None:
    """Embeddings (word, token type, LayerNorm) and every layer; ``qk_*`` rework q and k projections."""
    m.take("embeddings.word.weight", "embeddings.word_embeddings.weight")
    m.take("embeddings.token_type.weight", "embeddings.token_type_embeddings.weight")
    m.take_module("embeddings.norm", "embeddings.LayerNorm")
    for i in range(num_layers):
        for zoo, hf in LAYER:
            qk = zoo in ("attention.q_proj", "attention.k_proj")
            m.take_module(f"layers.{i}.{zoo}", f"encoder.layer.{i}.{hf}", qk_how if qk else "",
                          qk_transform if qk else None)
    m.drop(BUFFERS, "index buffers (arange, zeros) that the zoo computes")


def take_pooler(m: Mapping, hidden_size: int, why_absent: str) -> None:
    """The pooler when the checkpoint has one; otherwise zeros, so pooler_output is 0, never a made-up value."""
    if "pooler.dense.weight" in m.tensors:
        m.take_module("pooler", "pooler.dense")
        return
    m.state["pooler.weight"] = torch.zeros(hidden_size, hidden_size)
    m.state["pooler.bias"] = torch.zeros(hidden_size)
    m.notes.append(f"no pooler in the checkpoint ({why_absent}): the zoo's pooler is zero, so pooler_output is "
                   "all zeros; use last_hidden_state")


def convert(checkpoint: Checkpoint, tensors: dict) -> tuple:
    pad = checkpoint.setting("pad_token_id", 0)
    config = encoder_config(checkpoint, pad, check_encoder(checkpoint), attention_type="standard",
                            positional_encoding_type="learned",
                            positional_encoding_max_len=checkpoint.setting("max_position_embeddings", 512))
    m = Mapping(tensors)
    take_encoder(m, config.num_layers)
    m.take("embeddings.positional.embedding.weight", "embeddings.position_embeddings.weight",
           "learned positions, row p for position p")
    take_pooler(m, config.hidden_size, "a task model built without one")
    encoder_notes(m, config, pad)
    return config, m


def classifier_activation(checkpoint: Checkpoint) -> str:
    return "pooler"  # BertForSequenceClassification: a linear layer on pooler_output
