"""What an exported file says about itself: metadata, I/O, op counts, custom nodes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from seo_export.errors import UsageError
from seo_export.export.exporter import DEFAULT_OPSET, METADATA_PREFIX, op_counts


def load_onnx(path: str | os.PathLike, with_weights: bool = False) -> onnx.ModelProto:
    """The ModelProto at ``path``; without weights, external data is not read (the graph is enough)."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load_model(str(path), load_external_data=with_weights)
    except DecodeError:
        raise UsageError(f"{path} is not an ONNX model (it does not parse as an ONNX protobuf)") from None
    except Exception as exc:  # onnx raises several types for unreadable external data
        raise UsageError(f"cannot read ONNX model {path}: {str(exc).splitlines()[0]}") from None
    if not model.graph.node and not model.graph.input:
        raise UsageError(f"{path} is not an ONNX model (it has no graph)")
    return model


def stored_metadata(model: onnx.ModelProto, key: str) -> dict | None:
    """A JSON object the exporter stored under seo_export.KEY, or None when absent."""
    full_key = METADATA_PREFIX + key
    for prop in model.metadata_props:
        if prop.key == full_key:
            try:
                value = json.loads(prop.value)
            except json.JSONDecodeError:
                raise UsageError(f"the ONNX metadata {full_key} is not valid JSON") from None
            return value if isinstance(value, dict) else None
    return None


def metadata_value(model: onnx.ModelProto, key: str) -> str | None:
    """The plain string the exporter stored under seo_export.KEY, or None when absent."""
    full_key = METADATA_PREFIX + key
    return next((prop.value for prop in model.metadata_props if prop.key == full_key), None)


def export_options(model: onnx.ModelProto) -> dict:
    """The ``export_onnx`` arguments a file was written with, from its metadata (defaults where absent)."""
    keep = metadata_value(model, "keep_fp32")
    return {"precision": metadata_value(model, "precision") or "fp32",
            "opset": int(metadata_value(model, "opset") or DEFAULT_OPSET),
            "io_dtype": metadata_value(model, "io_dtype") or "fp32",
            "decomposed": metadata_value(model, "decomposed") == "true",
            "keep_fp32": tuple(json.loads(keep)) if keep else ()}


def graph_differences(model: onnx.ModelProto, other: onnx.ModelProto) -> list[str]:
    """What differs between two files' computations (weights, nodes, functions), ignoring metadata;
    empty when they compute the same thing the same way."""

    def digests(items, key):
        return {key(item): item.SerializeToString(deterministic=True) for item in items}

    differences = []
    for what, a, b in (
        ("weights", digests(model.graph.initializer, lambda t: t.name), digests(other.graph.initializer, lambda t: t.name)),
        ("nodes", digests(model.graph.node, lambda n: tuple(n.output)), digests(other.graph.node, lambda n: tuple(n.output))),
        ("functions", digests(model.functions, lambda f: (f.domain, f.name, f.overload)),
         digests(other.functions, lambda f: (f.domain, f.name, f.overload))),
    ):
        changed = sorted(str(k) for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if changed:
            differences.append(f"{len(changed)} {what} (first: {changed[0]})")
    return differences


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
         "attributes": node_attributes(n)}
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


def node_attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes by name, as Python values (string attributes decoded)."""
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def config_from_onnx(model: onnx.ModelProto):
    """The TransformerConfig stored by the exporter, or a clear error for foreign files."""
    from seo_export.models import TransformerConfig

    stored = stored_metadata(model, "config")
    if stored is None:
        raise UsageError(f"this ONNX file has no {METADATA_PREFIX}config metadata: it was not written by "
                         "`seo-export export`, or a tool dropped it (polygraphy surgeon sanitize does); restore it "
                         "with `seo-export sanitize FILE --tool none --restore-from EXPORTED.onnx -o OUT.onnx`")
    return TransformerConfig.from_dict(stored)
