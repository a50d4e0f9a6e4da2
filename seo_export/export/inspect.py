"""What an exported file says about itself: metadata, I/O, op counts, custom nodes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from seo_export.errors import UsageError
from seo_export.export.exporter import METADATA_PREFIX, op_counts


def load_onnx(path: str | os.PathLike, load_external_data: bool = False) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    try:
        return onnx.load_model(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise UsageError(f"{path} is not an ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _value_summary(value: onnx.ValueInfoProto) -> dict:
    tensor = value.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, "shape": dims}


def describe(model: onnx.ModelProto) -> dict:
    metadata = {e.key: e.value for e in model.metadata_props}
    ours = {k[len(METADATA_PREFIX):]: v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
    if "config" in ours:
        ours["config"] = json.loads(ours["config"])
    custom = [
        {"name": n.name, "op": f"{n.domain}::{n.op_type}", "overload": n.overload,
         "attributes": {a.name: _attribute(a) for a in n.attribute}}
        for n in model.graph.node if n.domain not in ("", "ai.onnx")
    ]
    return {
        "seo_export": ours,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [_value_summary(v) for v in model.graph.input],
        "outputs": [_value_summary(v) for v in model.graph.output],
        "op_counts": op_counts(model),
        "custom_nodes": custom,
        "functions": [f"{f.domain}::{f.name}" + (f"[{f.overload}]" if f.overload else "") for f in model.functions],
    }


def _attribute(attribute: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attribute)
    return value.decode() if isinstance(value, bytes) else value


def config_from_onnx(model: onnx.ModelProto):
    """The TransformerConfig stored by the exporter, or a clear error for foreign files."""
    from seo_export.models import TransformerConfig

    key = METADATA_PREFIX + "config"
    stored = {e.key: e.value for e in model.metadata_props}.get(key)
    if stored is None:
        raise UsageError(f"this ONNX file has no {key} metadata: it was not written by seo-export export")
    return TransformerConfig.from_dict(json.loads(stored))
