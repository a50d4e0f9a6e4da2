"""ONNX Runtime: the CUDA provider when onnxruntime-gpu is installed, else the CPU provider."""

from __future__ import annotations

import os

import numpy as np

from seo_export.backends.base import Runner
from seo_export.errors import UsageError

#: ORT graph fusions left off on the CPU provider: on ORT 1.32's CPU kernels each fused op is
#: slower than what it replaces ([4, 512, 768] SkipLayerNormalization 6.0 ms against 2.2 ms for
#: Add + LayerNormalization; [4, 512, 3072] BiasGelu 8.0 ms against 6.8 ms for Add + Gelu, in
#: scripts/results/ort_kernels.md). Re-measure with ``python -m seo_export.bench.ort_kernels``.
CPU_SLOWER_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def create_session(model, providers: list[str] | None = None, intra_op_threads: int | None = None,
                   disabled_fusions: tuple[str, ...] | None = None, optimized_path: str | None = None,
                   profile_prefix: str | None = None):
    """An InferenceSession over a path or a ModelProto, set up the way every seo-export run uses it.

    The intra-op threads spin while a run is going (ORT's default) but stop at the end of each
    run: otherwise they keep two cores busy for ~50 ms afterwards and slow whatever runs next,
    such as eager PyTorch timed beside ORT. ``disabled_fusions`` defaults to
    ``CPU_SLOWER_FUSIONS`` on the CPU provider alone and to none otherwise. ``optimized_path``
    receives the graph ORT actually runs, after its fusions; with ``profile_prefix`` ORT
    profiles every run into a JSON file of that prefix (``session.end_profiling()`` names it).
    """
    import onnxruntime as ort

    providers = providers or default_providers()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    if optimized_path:
        options.optimized_model_filepath = str(optimized_path)
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    source = str(model) if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    if disabled_fusions is None:
        disabled_fusions = CPU_SLOWER_FUSIONS if providers == ["CPUExecutionProvider"] else ()
    return ort.InferenceSession(source, options, providers=providers, disabled_optimizers=list(disabled_fusions))


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
        try:
            self.session = create_session(self.model_path, self.providers, self.intra_op_threads)
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
