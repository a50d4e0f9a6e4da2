"""Eager PyTorch: the reference every other backend is compared against."""

from __future__ import annotations

import numpy as np
import torch

from seo_export.backends.base import Runner


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32, device: str = "cpu",
                 output_hidden_states: bool = False):
        super().__init__()
        self.model, self.dtype, self.device = model, dtype, device
        self.output_hidden_states = output_hidden_states

    def activate_impl(self) -> None:
        self.model = self.model.to(device=self.device, dtype=self.dtype).eval()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        input_ids = torch.from_numpy(np.ascontiguousarray(feeds["input_ids"])).to(self.device)
        mask = feeds.get("attention_mask")
        mask = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask)).to(self.device)
        with torch.inference_mode():
            out = self.model(input_ids, mask, output_hidden_states=self.output_hidden_states)
        result = {"last_hidden_state": out["last_hidden_state"], "pooler_output": out["pooler_output"]}
        for i, hidden in enumerate(out.get("hidden_states", ())):
            result[f"hidden_state_{i}"] = hidden
        return {k: v.float().cpu().numpy() for k, v in result.items()}
