"""Longformer: sliding-window attention and RoBERTa-style learned positions.

attention_window w (even) lets token i see |i - j| <= w/2, the zoo's local window w. Position ids
start at pad_token_id + 1, so the zoo's table is the checkpoint's rows from there on. Exact on valid
tokens of right-padded input without global attention; the ``*_global`` projections are unused then.
"""

from __future__ import annotations

from seo_export.convert.bert import encoder_config, encoder_notes, take_encoder, take_pooler
from seo_export.convert.common import Checkpoint, Mapping, NotRepresentable, activation

MODEL_TYPE = "longformer"
PREFIX = "longformer."
GLOBAL = ("query_global", "key_global", "value_global")


def window(checkpoint: Checkpoint, num_layers: int) -> int:
    windows = checkpoint.setting("attention_window", 512)
    if isinstance(windows, list):
        if len(windows) != num_layers:
            raise NotRepresentable(f"attention_window has {len(windows)} entries for {num_layers} layers")
        if len(set(windows)) > 1:
            raise NotRepresentable(f"per-layer attention windows {windows} cannot be represented: the zoo has one "
                                   "attention_window_size for all layers")
        windows = windows[0]
    if not isinstance(windows, int) or isinstance(windows, bool) or windows <= 0 or windows % 2:
        raise NotRepresentable(f"attention_window {windows!r} cannot be represented: Longformer needs a positive "
                               "even window (each side sees window / 2)")
    return windows


def convert(checkpoint: Checkpoint, tensors: dict) -> tuple:
    activation(checkpoint)  # no is_decoder or cross-attention: transformers' Longformer ignores both
    pad = checkpoint.setting("pad_token_id", 1)
    if not isinstance(pad, int) or isinstance(pad, bool):
        raise NotRepresentable(f"pad_token_id {pad!r} cannot be represented: Longformer's position ids count "
                               "from pad_token_id + 1")
    table_rows = checkpoint.setting("max_position_embeddings", 512)
    max_positions = table_rows - pad - 1 if isinstance(table_rows, int) else 0
    if max_positions <= 0:
        raise NotRepresentable(f"max_position_embeddings {table_rows!r} leaves no positions after pad_token_id {pad}")
    layers = checkpoint.setting("num_hidden_layers")
    config = encoder_config(checkpoint, pad, attention_type="local", attention_window_size=window(checkpoint, layers),
                            positional_encoding_type="learned", positional_encoding_max_len=max_positions)
    m = Mapping(tensors)
    take_encoder(m, config.num_layers)
    m.take("embeddings.positional.embedding.weight", "embeddings.position_embeddings.weight",
           f"rows {pad + 1}..: RoBERTa-style position ids start at pad_token_id + 1",
           lambda table: table[pad + 1:])
    m.drop([f"encoder.layer.{i}.attention.self.{g}.{p}" for i in range(config.num_layers)
            for g in GLOBAL for p in ("weight", "bias")],
           "global-attention projections: used only for tokens with global attention, which the zoo does not have")
    take_pooler(m, config.hidden_size, "a task model built without one")
    encoder_notes(m, config, pad)
    m.notes.append("exact on valid tokens of right-padded input without global attention, where input_ids hold "
                   "pad_token_id only at padded positions; transformers' Longformer task models add global "
                   "attention (e.g. on the first token for classification), which this encoder does not")
    return config, m


def classifier_activation(checkpoint: Checkpoint) -> str:
    raise NotRepresentable("LongformerForSequenceClassification gives the first token global attention, which the "
                           "zoo's local attention does not have, so its logits cannot be reproduced; pass "
                           "--encoder-only (encoder_only=True) to convert the encoder alone")
