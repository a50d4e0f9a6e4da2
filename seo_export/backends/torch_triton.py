"""Eager PyTorch with the ``seo`` ops on the Triton kernels (``torch-triton``): the kernels inside a whole model.

The model is the eager one ``torch`` runs; only LocalAttention and SparseAttention change, calling
``backend="triton"`` of the seo ops (``models.attention.ops_backend``). Dense attention kinds have no
seo op, so they run as under ``torch``. It needs Triton and a CUDA GPU, or ``TRITON_INTERPRET=1``,
where the kernels run on the CPU in Triton's interpreter (slow: for tests at tiny sizes).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from seo_export.backends.torch_runner import TorchRunner
from seo_export.errors import MissingDependencyError
from seo_export.models.attention import ops_backend

NAME = "torch-triton"


def triton_unavailable_reason() -> str | None:
    """None where the kernels can run here, else the one-line reason."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"{NAME} needs Triton ({exc}); install it with: pip install 'seo-export[kernels]'"
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    why = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
    return f"{NAME} runs the Triton kernels on a CUDA GPU and {why} (TRITON_INTERPRET=1 runs them on the CPU, slowly)"


def triton_device() -> str:
    """'cuda' where a GPU is visible, 'cpu' under TRITON_INTERPRET=1; MissingDependencyError otherwise."""
    reason = triton_unavailable_reason()
    if reason:
        raise MissingDependencyError(reason)
    return "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


class TorchTritonRunner(TorchRunner):
    name = NAME

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32, device: str | None = None):
        super().__init__(model, dtype, device or triton_device())

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with ops_backend("triton"):
            return super().infer_impl(feeds)
