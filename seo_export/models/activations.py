"""The activations a config names, by name: the feed-forward's and the classification head's."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

ACTIVATIONS = {
    "gelu": F.gelu,
    # transformers' gelu_new and gelu_pytorch_tanh; exported as ONNX Gelu(approximate="tanh").
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
    "tanh": torch.tanh,
}


def activation(name: str):
    return ACTIVATIONS[name]
