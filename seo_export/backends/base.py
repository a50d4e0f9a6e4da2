"""The one contract every backend runner follows (after Polygraphy's BaseRunner).

A runner is built from a model (lazily: nothing heavy happens in ``__init__``),
``activate``d once, then ``infer`` is called with numpy feeds named like the ONNX
inputs (``input_ids``, ``attention_mask``) and returns numpy outputs named like the
ONNX outputs (``last_hidden_state``, ``pooler_output``, ...).
"""

from __future__ import annotations

import abc
import time

import numpy as np


class Runner(abc.ABC):
    name: str = "runner"

    def __init__(self) -> None:
        self.active = False
        self.last_inference_s: float | None = None

    def activate(self) -> "Runner":
        if not self.active:
            self.activate_impl()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self.deactivate_impl()
            self.active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.active:
            raise RuntimeError(f"{self.name} runner must be activated before infer()")
        start = time.perf_counter()
        outputs = self.infer_impl(feeds)
        self.last_inference_s = time.perf_counter() - start
        return outputs

    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    @abc.abstractmethod
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate_impl(self) -> None:
        pass
