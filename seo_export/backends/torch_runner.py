"""Eager PyTorch: the reference every other backend is compared against."""

from __future__ import annotations

import numpy as np
import torch

from seo_export.backends.base import Runner

#: The precisions eager PyTorch computes in (``seo-export run --precision``).
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        super().__init__()
        self.model, self.dtype, self.device = model, dtype, device

    def activate_impl(self) -> None:
        self.model = self.model.to(device=self.device, dtype=self.dtype).eval()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        input_ids = torch.from_numpy(np.ascontiguousarray(feeds["input_ids"])).to(self.device)
        mask = feeds.get("attention_mask")
        mask = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask)).to(self.device)
        with torch.inference_mode():
            out = self.model(input_ids, mask)
        return {k: v.float().cpu().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def torch_model_from_onnx(path, checkpoint=None):
    """The eager model an exported file was made from: its stored config and weight provenance.

    Weights the exporter kept under their parameter names are compared with the rebuilt
    model, so a file whose weights were edited is refused rather than silently mismatched.
    """
    from onnx import numpy_helper

    from seo_export.errors import UsageError
    from seo_export.export.inspect import config_from_onnx, load_onnx, stored_metadata
    from seo_export.models.build import rebuild_model

    proto = load_onnx(path, with_weights=True)
    model = rebuild_model(config_from_onnx(proto), stored_metadata(proto, "weights") or {}, checkpoint)
    state = model.state_dict()
    for tensor in proto.graph.initializer:
        name = tensor.name.removeprefix("model.")
        if name in state and tuple(tensor.dims) == tuple(state[name].shape):
            stored = torch.from_numpy(numpy_helper.to_array(tensor).astype(np.float32))
            if not torch.allclose(stored, state[name].float(), atol=1e-3, rtol=1e-3):
                raise UsageError(f"{path}: weight {name} differs from the model it records (the file was changed "
                                 "after export, or is not from the --checkpoint given), so eager PyTorch cannot be "
                                 "rebuilt for it")
    return model
