"""Nystromformer: BERT's layout plus a depthwise convolution over V, the tanh GELU, positions from 2.

transformers computes full softmax attention when num_landmarks == segment_means_seq_len (every
published checkpoint), so those convert to the zoo's standard attention. Otherwise it runs landmark
attention only at S == segment_means_seq_len, scaling the pseudo-inverse's start by one maximum over
the whole batch and every head, and averaging landmarks over padding too; the zoo scales per matrix
and masks padding, so the two agree for a single head on unpadded input, and more heads are refused.
"""

from __future__ import annotations

from seo_export.convert.bert import check_encoder, encoder_config, encoder_notes, take_encoder, take_pooler
from seo_export.convert.common import Checkpoint, Mapping, NotRepresentable, activation

MODEL_TYPE = "nystromformer"
PREFIX = "nystromformer."
POSITION_OFFSET = 2  # transformers' position ids are arange(S) + 2
PINV_ITERATIONS = 6  # transformers' iterative_inv default


def value_conv_kernel(checkpoint: Checkpoint) -> int:
    kernel = checkpoint.setting("conv_kernel_size", None)
    if kernel is None:
        return 0
    if not isinstance(kernel, int) or isinstance(kernel, bool) or kernel <= 0 or kernel % 2 == 0:
        raise NotRepresentable(f"conv_kernel_size {kernel!r} cannot be represented: the zoo's value convolution "
                               "takes an odd kernel, which keeps the sequence length")
    return kernel


def attention_fields(checkpoint: Checkpoint, heads: int) -> tuple[dict, str]:
    """The zoo's attention settings and a note on what they reproduce."""
    landmarks = checkpoint.setting("num_landmarks", 64)
    segment_len = checkpoint.setting("segment_means_seq_len", 64)
    if landmarks == segment_len:
        return {"attention_type": "standard"}, (
            f"num_landmarks == segment_means_seq_len ({landmarks}): transformers computes full softmax attention, "
            "so this is the zoo's standard attention")
    if checkpoint.setting("inv_coeff_init_option", False):
        raise NotRepresentable("inv_coeff_init_option cannot be represented: the zoo starts the pseudo-inverse "
                               "iteration the original way")
    if not (isinstance(landmarks, int) and isinstance(segment_len, int) and 0 < landmarks
            and segment_len % landmarks == 0):
        raise NotRepresentable(f"segment_means_seq_len {segment_len!r} is not a multiple of num_landmarks "
                               f"{landmarks!r}, which transformers' landmark attention needs")
    if heads != 1:
        raise NotRepresentable(f"landmark attention with {heads} heads cannot be represented exactly: transformers "
                               "scales the pseudo-inverse's start by one maximum over all heads and the batch, the "
                               "zoo per head and sample")
    return {"attention_type": "sparse", "attention_num_landmarks": landmarks,
            "attention_pinv_iterations": PINV_ITERATIONS}, (
        f"landmark attention ({landmarks} landmarks): transformers runs it only at S == segment_means_seq_len "
        f"({segment_len}) and averages landmarks over padding too, so it agrees with the zoo on unpadded input "
        "of that length")


def convert(checkpoint: Checkpoint, tensors: dict) -> tuple:
    causal = check_encoder(checkpoint)
    heads = checkpoint.setting("num_attention_heads")
    attention, note = attention_fields(checkpoint, heads)
    kernel = value_conv_kernel(checkpoint)
    pad = checkpoint.setting("pad_token_id", 1)
    max_positions = checkpoint.setting("max_position_embeddings", 510)
    config = encoder_config(checkpoint, pad, causal, positional_encoding_type="learned",
                            positional_encoding_max_len=max_positions, attention_value_conv_kernel=kernel,
                            hidden_act=activation(checkpoint, "gelu_new"), **attention)
    m = Mapping(tensors)
    take_encoder(m, config.num_layers)
    m.take("embeddings.positional.embedding.weight", "embeddings.position_embeddings.weight",
           f"rows {POSITION_OFFSET}..: Nystromformer's position ids start at {POSITION_OFFSET}",
           lambda table: table[POSITION_OFFSET:])
    if kernel:
        for i in range(config.num_layers):
            m.take(f"layers.{i}.attention.value_conv.weight", f"encoder.layer.{i}.attention.self.conv.weight",
                   "depthwise convolution over V, added to the attention output")
    take_pooler(m, config.hidden_size, "Nystromformer has none")
    encoder_notes(m, config, pad)
    m.notes.append(note)
    return config, m


def classifier_activation(checkpoint: Checkpoint) -> str:
    return activation(checkpoint, "gelu_new")  # NystromformerClassificationHead: dense, hidden_act, out_proj
