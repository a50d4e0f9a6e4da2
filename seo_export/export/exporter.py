"""export_onnx: an SEOSpecificTransformer -> a checked, reproducible ONNX file."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from seo_export import __version__
from seo_export.errors import UsageError
from seo_export.export import postprocess
from seo_export.export.functions import DOMAIN, LANDMARK, LOCAL_WINDOW, OP_VERSION
from seo_export.export.translation import translation_table
from seo_export.export.internals import internal_names, output_names
from seo_export.export.wrapper import INPUT_NAMES, ExportWrapper, keep_in_fp32
from seo_export.models.attention import MultiHeadAttention
from seo_export.models.transformer import SEOSpecificTransformer
from seo_export.utils.files import atomic_path

MIN_OPSET, MAX_OPSET = 18, 23
# 20 is the first with ONNX's Gelu: one kernel in ONNX Runtime and TensorRT instead of an
# Erf pattern of five ops (about 2x slower in ORT, see seo_export.bench.ort_kernels).
DEFAULT_OPSET = 20
ATTENTION_OP_OPSET = 23  # ONNX's Attention op for standard attention from here on
# int8: the FP32 export with its linear layers dynamically quantized by ONNX Runtime (export.quantize),
# for ONNX Runtime on a CPU; TensorRT does not build it.
PRECISIONS = ("fp32", "fp16", "int8")
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf's hard limit for one message
METADATA_PREFIX = "seo_export."


@dataclass
class ExportResult:
    path: Path
    sha256: str
    precision: str
    opset: int
    decomposed: bool
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def custom_nodes(self) -> int:
        return sum(n for op, n in self.op_counts.items() if op.startswith(f"{DOMAIN}::"))


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    return dict(sorted(counts.items()))


def _check_arguments(precision: str, opset: int, io_dtype: str) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if io_dtype not in ("fp32", "fp16"):
        raise UsageError(f"io dtype must be fp32 or fp16, got {io_dtype!r}")
    if precision == "int8" and io_dtype != "fp32":
        raise UsageError("--precision int8 computes in FP32 around INT8 linear layers and has FP32 inputs and "
                         "outputs; --io-dtype fp16 does not apply to it")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(
            f"opset {opset} is not supported: seo-export writes opsets {MIN_OPSET} to {MAX_OPSET} "
            f"(LayerNormalization and the torch.onnx translation library need >= {MIN_OPSET})"
        )


def _sample_inputs(model: SEOSpecificTransformer):
    config = model.config
    seq = min(17, config.positional_encoding_max_len)  # not a special size: avoids specialising seq
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, config.vocab_size, (2, seq), generator=generator)
    attention_mask = torch.ones(2, seq, dtype=torch.int64)
    attention_mask[1, seq // 2:] = 0
    return input_ids, attention_mask


def _dynamic_shapes(model: SEOSpecificTransformer) -> dict:
    max_seq = model.config.positional_encoding_max_len if model.config.positional_encoding_type == "learned" else None
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=1, max=max_seq) if max_seq else torch.export.Dim("seq", min=1)
    return {name: {0: batch, 1: seq} for name in INPUT_NAMES}


def trace_to_onnx(model: SEOSpecificTransformer, precision: str = "fp32", opset: int = DEFAULT_OPSET,
                  io_dtype: str = "fp32", keep_fp32: tuple[str, ...] = ()) -> onnx.ModelProto:
    """torch.onnx (dynamo) export of the wrapper; seo ops become single seo:: nodes.

    The internals (hidden states, attention outputs) are traced as outputs so that their
    values carry stable names; ``postprocess.keep_outputs`` later demotes them.
    """
    model = copy.deepcopy(model).eval()
    if precision == "fp16":
        fp32_model, model = model, copy.deepcopy(model).half()
        try:
            keep_in_fp32(model, keep_fp32, source=fp32_model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif keep_fp32:
        raise UsageError("--keep-fp32 only applies to --precision fp16")
    if opset >= ATTENTION_OP_OPSET:
        for module in model.modules():
            if isinstance(module, MultiHeadAttention):
                module.fused_attention = True
    output_dtype = torch.float32 if io_dtype == "fp32" else torch.float16
    wrapper = ExportWrapper(model, output_dtype, with_internals=True).eval()
    outputs = output_names(model.config) + internal_names(model.config.num_layers)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper, _sample_inputs(model), None, dynamo=True, opset_version=opset,
            dynamic_shapes=_dynamic_shapes(model), input_names=list(INPUT_NAMES), output_names=list(outputs),
            custom_translation_table=translation_table(), optimize=True, report=False, verify=False,
        )
    return program.model_proto


def metadata_for(model: SEOSpecificTransformer, precision: str, opset: int, io_dtype: str,
                 decomposed: bool, weights: dict | None = None) -> dict[str, str]:
    custom = {} if decomposed else {f"{DOMAIN}::{LOCAL_WINDOW}": OP_VERSION, f"{DOMAIN}::{LANDMARK}": OP_VERSION}
    values = {
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "version": __version__,
        "precision": precision,
        "io_dtype": io_dtype,
        "opset": str(opset),
        "decomposed": str(decomposed).lower(),
        "custom_ops": json.dumps(custom, sort_keys=True),
        # Where the weights came from, so `run --backend torch` can rebuild the eager model.
        "weights": json.dumps(weights or {}, sort_keys=True),
    }
    return {METADATA_PREFIX + k: v for k, v in values.items()}


def build_onnx(model: SEOSpecificTransformer, precision: str = "fp32", opset: int = DEFAULT_OPSET,
               decomposed: bool = False, io_dtype: str = "fp32", with_internals: bool = False,
               progress=None, weights: dict | None = None, keep_fp32: tuple[str, ...] = (),
               quantization=None) -> onnx.ModelProto:
    """The finished ModelProto (checked), without writing it. ``precision="int8"``: the FP32 graph, then
    ``export.quantize.quantize_model`` with ``quantization`` (a QuantizationSettings; None: the defaults)."""
    _check_arguments(precision, opset, io_dtype)
    if quantization is not None and precision != "int8":
        raise UsageError("quantization settings apply only to --precision int8")
    int8, precision = precision == "int8", ("fp32" if precision == "int8" else precision)
    step = progress or (lambda message: None)
    step("tracing the model with torch.onnx")
    proto = trace_to_onnx(model, precision, opset, io_dtype, tuple(keep_fp32))
    step("attaching seo functions and metadata")
    if not with_internals:
        postprocess.keep_outputs(proto, output_names(model.config))
    postprocess.strip_trace_metadata(proto)
    postprocess.attach_functions(proto)
    if decomposed:
        proto = postprocess.decompose(proto)
    metadata = metadata_for(model, precision, opset, io_dtype, decomposed, weights)
    metadata[METADATA_PREFIX + "keep_fp32"] = json.dumps(list(keep_fp32))
    postprocess.set_metadata(proto, metadata)
    step("checking the model")
    if proto.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        onnx.checker.check_model(proto, full_check=True)
    if int8:
        from seo_export.export.quantize import quantize_model  # onnxruntime.quantization: only when asked

        step("quantizing the linear layers to INT8 (onnxruntime.quantization)")
        proto = quantize_model(proto, quantization)
        if proto.ByteSize() < EXTERNAL_DATA_THRESHOLD:
            onnx.checker.check_model(proto, full_check=True)
    return proto


def save_model(proto: onnx.ModelProto, path: Path) -> bytes | None:
    """Write atomically; over 2 GB the weights go to PATH.data beside it. Returns the bytes when inline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if proto.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        data = proto.SerializeToString(deterministic=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return data
    data_name = path.name + ".data"
    with atomic_path(path.parent / data_name) as data_tmp, atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_tmp.name, size_threshold=1024)
        # The model names its data file by final name; the rename happens when both are complete.
        fixed = onnx.load_model(str(tmp), load_external_data=False)
        for tensor in fixed.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
        tmp.write_bytes(fixed.SerializeToString(deterministic=True))
    return None


def export_onnx(model: SEOSpecificTransformer, path: str | os.PathLike, precision: str = "fp32",
                opset: int = DEFAULT_OPSET, decomposed: bool = False, io_dtype: str = "fp32",
                with_internals: bool = False, progress=None, weights: dict | None = None,
                keep_fp32: tuple[str, ...] = (), quantization=None) -> ExportResult:
    """Export ``model`` to ``path``: one seo:: node per local/landmark attention call, each with a
    portable function body; ``decomposed`` inlines them. The file appears only when complete.

    ``weights`` records where the weights came from ({"seed": n} or {"checkpoint_sha256": h});
    ``keep_fp32`` names modules (e.g. ``layers.3.attention``) an FP16 export keeps in FP32;
    ``with_internals`` keeps every layer's output as a graph output; ``quantization`` (a
    ``export.quantize.QuantizationSettings``) sets how ``precision="int8"`` quantizes.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"output path {path} is a directory; give a file name such as {path / 'model.onnx'}")
    if not path.parent.exists() and str(path.parent):
        raise UsageError(f"output folder {path.parent} does not exist; create it first")
    if not os.access(path.parent if str(path.parent) else ".", os.W_OK):
        raise UsageError(f"cannot write to {path.parent}: permission denied")
    proto = build_onnx(model, precision, opset, decomposed, io_dtype, with_internals, progress, weights, keep_fp32,
                       quantization)
    if progress:
        progress(f"writing {path}")
    data = save_model(proto, path)
    digest = hashlib.sha256(data if data is not None else path.read_bytes()).hexdigest()
    return ExportResult(path, digest, precision, opset, decomposed, op_counts(proto))
