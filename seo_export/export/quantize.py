"""INT8 for CPU: an FP32 export -> ONNX Runtime's dynamic INT8 quantization of the linear layers.

ONNX Runtime's own tool does the work (``onnxruntime.quantization.quantize_dynamic``): each linear
layer's weight is stored as INT8 with a scale, and at run time ``DynamicQuantizeLinear`` quantizes
its input activation to UINT8 per call, ``MatMulInteger`` multiplies in integers, and a ``Cast`` and
``Mul`` rescale to FP32. Only MatMul/Gemm nodes whose second input is a linear layer's weight are
handed to it; everything else stays the FP32 export's own node, unchanged: the ``seo::`` nodes and
their function bodies (the quantizer never enters functions), Softmax, LayerNorm, the mask logic,
activation x activation MatMuls (Q.K^T and P.V of dense attention) and the relative-position tables'
MatMuls (constant B, but attention math, not a linear layer). ``quantize_model`` checks that after
the tool ran.

The file is for ONNX Runtime on a CPU. TensorRT takes explicit Q/DQ quantization, not
``DynamicQuantizeLinear``/``MatMulInteger``, and ``seo-export build`` refuses it.

Defaults (per-channel, QInt8 weights) were chosen by measurement: ``scripts/int8_choice.py``,
results in ``scripts/results/int8_choice.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from seo_export.errors import UsageError
from seo_export.export import postprocess
from seo_export.export.functions import DOMAIN

#: ONNX Runtime's names for the weight types; activations are always QUInt8 in dynamic mode.
WEIGHT_TYPES = ("QInt8", "QUInt8")
#: Measured on the default model (scripts/results/int8_choice.md): see the module docstring.
DEFAULT_PER_CHANNEL = True
DEFAULT_WEIGHT_TYPE = "QInt8"
#: Op types handed to the quantizer (Gemm is rewritten to MatMul by it first: the pooler, classifier).
OP_TYPES = ("MatMul", "Gemm")
#: What the dynamic quantizer adds to the graph.
QUANTIZED_OPS = ("DynamicQuantizeLinear", "MatMulInteger")
METHOD = "onnxruntime.quantization.quantize_dynamic"
#: Protobuf's limit: larger models go through the quantizer with external data.
_PROTO_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class QuantizationSettings:
    """How ``quantize_dynamic`` is called. ``reduce_range`` (7-bit weights) is for CPUs without VNNI,
    where ONNX Runtime's U8S8 kernels can saturate; off by default (this project's CPUs have VNNI)."""

    per_channel: bool = DEFAULT_PER_CHANNEL
    weight_type: str = DEFAULT_WEIGHT_TYPE
    reduce_range: bool = False
    op_types: tuple[str, ...] = OP_TYPES

    def __post_init__(self) -> None:
        if self.weight_type not in WEIGHT_TYPES:
            raise UsageError(f"INT8 weight type must be one of {', '.join(WEIGHT_TYPES)}, got {self.weight_type!r}")
        unknown = sorted(set(self.op_types) - set(OP_TYPES))
        if unknown or not self.op_types:
            raise UsageError(f"INT8 op types must be a non-empty subset of {', '.join(OP_TYPES)}, got "
                             f"{', '.join(self.op_types) or 'none'}")

    def record(self) -> dict:
        """The settings as the file's metadata records them (seo_export.quantization)."""
        import onnxruntime

        return {"method": METHOD, "mode": "dynamic", **asdict(self), "op_types": list(self.op_types),
                "activation_type": "QUInt8", "onnxruntime": onnxruntime.__version__}


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its large initializers' data left out (names, types and dims kept): shape
    inference reads no more, and a 400 MB model is not copied for it."""
    light = onnx.ModelProto()
    for field in ("ir_version", "opset_import", "functions", "producer_name"):
        value = getattr(model, field)
        if isinstance(value, (int, str)):
            setattr(light, field, value)
        else:
            getattr(light, field).extend(value)
    for field in ("node", "input", "output", "value_info"):
        getattr(light.graph, field).extend(getattr(model.graph, field))
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.raw_data) > 4096:
            light.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
        else:
            light.graph.initializer.append(tensor)
    return light


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every value shape inference can type."""
    inferred = onnx.shape_inference.infer_shapes(_weightless(model))
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}


def _linear_shapes(model: onnx.ModelProto) -> set[tuple[int, int]] | None:
    """[in, out] of every nn.Linear the stored config implies (either orientation), None without a config."""
    config = next((p.value for p in model.metadata_props if p.key == "seo_export.config"), None)
    if config is None:
        return None
    c = json.loads(config)
    hidden, inner, labels = c["hidden_size"], c["intermediate_size"], c.get("num_labels") or 0
    shapes = {(hidden, hidden), (hidden, inner), (inner, hidden)} | ({(hidden, labels)} if labels else set())
    return shapes | {(b, a) for a, b in shapes}


def linear_layer_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes that are linear layers: B a 2-D float initializer of a shape the
    config's linear layers have, A of rank <= 3 ([batch, seq, features]; per-head attention math is
    rank 4). The relative-position tables' MatMuls ([B, H, S, D] x [D, 2R + 1]) are not among them."""
    weights = _initializers(model)
    shapes = _linear_shapes(model)
    ranks = _ranks(model)
    found = []
    for node in model.graph.node:
        if node.op_type not in OP_TYPES or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        weight = weights.get(node.input[1])
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            continue
        if shapes is not None and tuple(weight.dims) not in shapes:
            continue
        if ranks.get(node.input[0], 3) > 3:
            continue
        found.append(node.name)
    return found


def _name_nodes(model: onnx.ModelProto) -> None:
    """The quantizer selects nodes by name: give the unnamed ones (torch.onnx names all) unique names."""
    taken = {n.name for n in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"seo_quant_{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _node_digests(model: onnx.ModelProto) -> dict[tuple[str, ...], bytes]:
    return {tuple(n.output): n.SerializeToString(deterministic=True) for n in model.graph.node}


def quantization_problems(quantized: onnx.ModelProto, source: onnx.ModelProto, quantized_nodes: list[str]) -> list[str]:
    """What the quantizer changed beyond the linear layers it was given; empty when every other node,
    every function body and the opset imports are the FP32 source's own."""
    problems = []
    replaced = set(quantized_nodes)
    before, after = _node_digests(source), _node_digests(quantized)
    producers = {out: n for n in quantized.graph.node for out in n.output}
    for node in source.graph.node:
        if node.name in replaced:
            continue
        if after.get(tuple(node.output)) == before[tuple(node.output)]:
            continue
        # The quantizer rewrites every Gemm as MatMul (+ Add), selected or not: the same FP32 math.
        rewritten = producers.get(node.output[0])
        if node.op_type == "Gemm" and rewritten is not None and rewritten.op_type in ("MatMul", "Add"):
            continue
        problems.append(f"node {node.name!r} ({node.op_type}) was changed or dropped")
    functions = lambda m: {(f.domain, f.name, f.overload): f.SerializeToString(deterministic=True)  # noqa: E731
                           for f in m.functions}
    if functions(quantized) != functions(source):
        problems.append("the seo function bodies were changed or dropped")
    opsets = lambda m: {o.domain or "ai.onnx": o.version for o in m.opset_import}  # noqa: E731
    lost = {d: v for d, v in opsets(source).items() if opsets(quantized).get(d) != v}
    if lost:
        problems.append(f"opset imports changed: {lost}")
    matmuls = sum(n.op_type == "MatMulInteger" for n in quantized.graph.node)
    if matmuls != len(replaced):
        problems.append(f"{len(replaced)} linear layers given, {matmuls} MatMulInteger nodes written")
    return problems


@contextlib.contextmanager
def _quiet():
    """The quantizer logs a pre-processing hint (its pre-processing would inline the seo functions)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_model(model: onnx.ModelProto, settings: QuantizationSettings | None = None,
                   exclude_nodes: tuple[str, ...] = ()) -> onnx.ModelProto:
    """The dynamic-INT8 model of an FP32 ``model`` (not modified), with its metadata, precision ``int8``
    and the settings recorded (``seo_export.quantization``). ``exclude_nodes`` names linear layers
    (MatMul/Gemm nodes) to keep in FP32 too. Raises when the tool touched anything but the linear
    layers it was given."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = settings or QuantizationSettings()
    precision = next((p.value for p in model.metadata_props if p.key == "seo_export.precision"), "fp32")
    if precision != "fp32":
        raise UsageError(f"INT8 quantization starts from an FP32 export; this file is {precision}")
    source = onnx.ModelProto()
    source.CopyFrom(model)
    _name_nodes(source)
    linear = linear_layer_nodes(source)
    if not linear:
        raise UsageError("the model has no linear layer to quantize (no MatMul/Gemm with a weight initializer)")
    op_types = {n.name: n.op_type for n in source.graph.node}
    chosen = [n for n in linear if op_types[n] in settings.op_types and n not in exclude_nodes]
    # Gemm nodes become "<name>_MatMul" inside the quantizer before it selects nodes.
    selected = chosen + [f"{n}_MatMul" for n in chosen]
    excluded = [n.name for n in source.graph.node if n.name not in chosen]
    large = source.ByteSize() >= _PROTO_LIMIT
    with tempfile.TemporaryDirectory(prefix="seo-export-int8-") as tmp, _quiet():
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            source, out, op_types_to_quantize=list(settings.op_types), per_channel=settings.per_channel,
            reduce_range=settings.reduce_range, weight_type=getattr(QuantType, settings.weight_type),
            nodes_to_quantize=selected, nodes_to_exclude=excluded, use_external_data_format=large,
            extra_options={"MatMulConstBOnly": True},
        )
        quantized = onnx.load_model(str(out), load_external_data=True)
    problems = quantization_problems(quantized, source, chosen)
    if problems:
        raise RuntimeError("onnxruntime's quantizer changed more than the linear layers: " + "; ".join(problems))
    # Metadata: the quantizer keeps it today; put back anything a version drops, then stamp ours.
    present = {p.key for p in quantized.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in present:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
    record = {**settings.record(), "quantized_nodes": len(chosen), "fp32_linear_nodes": len(linear) - len(chosen)}
    postprocess.set_metadata(quantized, {"seo_export.precision": "int8",
                                         "seo_export.quantization": json.dumps(record, sort_keys=True)})
    if not any(o.domain == DOMAIN for o in quantized.opset_import) and any(o.domain == DOMAIN for o in source.opset_import):
        raise RuntimeError("onnxruntime's quantizer dropped the seo opset import")
    return quantized


def is_dynamic_int8(model: onnx.ModelProto) -> bool:
    """Whether ``model`` is a dynamic-INT8 graph (by its ops, whatever its metadata says)."""
    return any(n.op_type in QUANTIZED_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node)


def quantize_file(source, output, settings: QuantizationSettings | None = None) -> dict[str, int]:
    """INT8 ``output`` from the FP32 export at ``source`` (no re-trace), written atomically as exports
    are. Returns the op counts of what was written."""
    from seo_export.export.exporter import op_counts, save_model
    from seo_export.export.inspect import load_onnx

    output = Path(output)
    if output.resolve() == Path(source).resolve():
        raise UsageError("the INT8 output path is the FP32 input; choose another output")
    quantized = quantize_model(load_onnx(source, with_weights=True), settings)
    if quantized.ByteSize() < _PROTO_LIMIT:
        onnx.checker.check_model(quantized, full_check=True)
    save_model(quantized, output)
    return op_counts(quantized)
