"""Small variants, cached exports and padded inputs shared by the export tests."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch

from seo_export import TransformerConfig
from seo_export.export import export_onnx
from seo_export.export.exporter import ExportResult, op_counts
from seo_export.export.postprocess import default_opset
from seo_export.models.build import build_model, weights_provenance
from seo_export.utils.files import sha256_file

WINDOW, LANDMARKS = 8, 4
ATTENTIONS = ("standard", "local", "sparse", "relative")
ENCODINGS = ("sinusoidal", "learned", "relative", "rotary")
VARIANTS = [(a, p, False) for a in ATTENTIONS for p in ENCODINGS] + [
    ("standard", "rotary", True), ("local", "relative", True), ("relative", "sinusoidal", True)]
# 1, not a multiple of the window (8) or the block/segment size, and several windows long.
LENGTHS = (1, 13, 41)


def variant_id(variant) -> str:
    attention, positional, causal = variant
    return f"{attention}-{positional}" + ("-causal" if causal else "")


def small_config(attention: str, positional: str, causal: bool = False) -> TransformerConfig:
    return TransformerConfig(
        hidden_size=32, num_layers=2, num_heads=4, vocab_size=100, intermediate_size=64,
        dropout_rate=0.0, attention_dropout=0.0, attention_type=attention, positional_encoding_type=positional,
        attention_window_size=WINDOW, attention_num_landmarks=LANDMARKS, attention_max_relative_position=4,
        positional_encoding_max_relative_position=4, positional_encoding_max_len=128, use_causal_mask=causal,
    )


def small_model(variant):
    """Peaked attention (models.build INITS): with the default init, miswired attention hides under FP16 rounding."""
    return build_model(small_config(*variant), seed=0, init="peaked")


_EXPORT_DIR: dict[str, Path] = {}


def export_dir(tmp_path_factory) -> Path:
    """One folder for the whole run: under xdist the workers' base folders share a parent, so a file
    one worker exported is read by the others rather than exported again."""
    if "dir" not in _EXPORT_DIR:
        base = tmp_path_factory.getbasetemp()
        _EXPORT_DIR["dir"] = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "exports"
        _EXPORT_DIR["dir"].mkdir(exist_ok=True)
    return _EXPORT_DIR["dir"]


@functools.lru_cache(maxsize=None)
def _exported(variant, precision: str, directory: Path, decomposed: bool = False):
    model = small_model(variant)
    path = directory / f"{variant_id(variant)}-{precision}{'-dec' if decomposed else ''}.onnx"
    if path.is_file():  # written whole by another worker (exports are atomic and deterministic)
        proto = onnx.load(str(path))
        return model, ExportResult(path, sha256_file(path), precision, default_opset(proto), decomposed,
                                   op_counts(proto))
    # Provenance recorded as `export --init peaked` does, so `validate --model` can rebuild the model.
    return model, export_onnx(model, path, precision=precision, decomposed=decomposed,
                              weights=weights_provenance(0, None, "peaked"))


def exported(tmp_path_factory, variant, precision="fp32", decomposed=False):
    return _exported(variant, precision, export_dir(tmp_path_factory), decomposed)


def padded_inputs(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ids with a full row, a right-padded row and (for batch 3) a fully padded row."""
    rng = np.random.default_rng(seed + seq)
    ids = rng.integers(1, 100, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    if batch > 1:
        mask[1, max(1, seq // 2):] = 0
    if batch > 2:
        mask[2, :] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def eager(model, feeds, dtype=torch.float32):
    """Eager outputs in ``dtype``, from a copy: casting the shared model there and back would
    leave its weights FP16-rounded for every later test."""
    model = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        out = model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    return {k: v.float().numpy() for k, v in out.items()}


def set_body_constant(functions, output: str, value: float) -> int:
    """Fault injection: the float Constant ``output`` of every function body in ``functions`` set to
    ``value``; how many were set."""
    count = 0
    for node in (n for function in functions for n in function.node):
        if node.op_type == "Constant" and node.output[0] == output:
            node.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(value, np.float32)))
            count += 1
    return count
