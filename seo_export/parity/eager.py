"""Eager PyTorch outputs, in the graph's output names, for FP32 reference and FP16 baseline."""

from __future__ import annotations

import copy

import numpy as np
import torch

from seo_export.export.internals import internal_names, output_names
from seo_export.export.wrapper import INPUT_NAMES, ExportWrapper


class EagerModel:
    """The eager model in one dtype, answering with the same names as the exported graph."""

    def __init__(self, model, dtype: torch.dtype = torch.float32):
        model = copy.deepcopy(model).eval().to(dtype)
        self.wrapper = ExportWrapper(model, torch.float32, with_internals=True).eval()
        self.names = output_names(model.config) + internal_names(model.config.num_layers)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in INPUT_NAMES]
        with torch.inference_mode():
            values = self.wrapper(*args)
        return {name: value.float().numpy() for name, value in zip(self.names, values)}


def attention_map(model, feeds: dict[str, np.ndarray], layer: int = 0, head: int = 0) -> np.ndarray:
    """The [S, S] attention pattern one head of one layer applies to the first sample."""
    ids = torch.from_numpy(feeds["input_ids"][:1])
    mask = torch.from_numpy(feeds["attention_mask"][:1])
    with torch.inference_mode():
        out = model(ids, mask, output_attentions=True)
    return out["attentions"][layer][0, head].float().numpy()
