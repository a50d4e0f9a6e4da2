"""Finding the break: the first layer and block where a backend leaves tolerance."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from seo_export.export import postprocess
from seo_export.export.internals import internal_names, module_of


def with_internal_outputs(model_path: Path, num_layers: int, directory: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the ONNX file whose internals are graph outputs; maps internal name -> graph name.

    The last layer's output is the contract output itself when the exporter merged them.
    """
    proto = onnx.load_model(str(model_path))
    wanted = list(internal_names(num_layers))
    found = postprocess.promote_outputs(proto, wanted)
    mapping = {name: name for name in found}
    last = wanted[-1]
    if last not in mapping:
        mapping[last] = "last_hidden_state"
    path = directory / f"{model_path.stem}.internals.onnx"
    onnx.save_model(proto, str(path))
    return path, mapping


def first_failure(judge, backend_values: dict[str, np.ndarray], eager_values: dict[str, np.ndarray],
                  mapping: dict[str, str], num_layers: int):
    """(module, verdict) of the first internal the judge fails, in graph order; None if all pass."""
    for name in internal_names(num_layers):
        graph_name = mapping.get(name)
        if graph_name is None or graph_name not in backend_values:
            continue
        verdict = judge(name, backend_values[graph_name], eager_values[name])
        if not verdict.passed:
            return module_of(name), verdict
    return None


def internals_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="seo-export-locate-")


__all__ = ["first_failure", "internals_workdir", "with_internal_outputs"]
