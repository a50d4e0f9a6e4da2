"""ONNX Runtime: the CUDA provider when onnxruntime-gpu is installed, else the CPU provider."""

from __future__ import annotations

import os

import numpy as np

from seo_export.backends.base import Runner
from seo_export.errors import UsageError


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OrtRunner(Runner):
    name = "ort"

    def __init__(self, model_path: str | os.PathLike, providers: list[str] | None = None,
                 intra_op_threads: int | None = None):
        super().__init__()
        self.model_path = str(model_path)
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.session = None

    def activate_impl(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        try:
            self.session = ort.InferenceSession(self.model_path, options, providers=self.providers or default_providers())
        except Exception as exc:  # ORT raises several types for a bad file
            raise UsageError(f"ONNX Runtime cannot load {self.model_path}: {str(exc).splitlines()[0]}") from None
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: v for k, v in feeds.items() if k in self.input_types}
        names = [o.name for o in self.session.get_outputs()]
        outputs = self.session.run(names, feeds)
        return {n: np.asarray(o, dtype=np.float32) if o.dtype == np.float16 else o for n, o in zip(names, outputs)}

    def deactivate_impl(self) -> None:
        self.session = None
