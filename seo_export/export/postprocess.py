"""After torch.onnx: attach the seo FunctionProtos, make bytes deterministic, stamp metadata.

The functions are added here rather than by the exporter because torch.onnx always
inlines model-local functions (its version-conversion pass runs an inliner).
"""

from __future__ import annotations

import onnx
import onnx.inliner
import onnx.numpy_helper

from seo_export.export.functions import DOMAIN, OP_VERSION, base_op, function_proto, op_type_for, overload_for

ATTRIBUTE_ORDER = ("window_left", "window_right", "num_landmarks", "pinv_iterations", "scale",
                   "plugin_namespace", "plugin_version")


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def seo_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN]


def _constant_fill(producers: dict, name: str):
    """The value a ``ConstantOfShape`` output is filled with (ONNX's default: float 0), else None."""
    node = producers.get(name)
    if node is None or node.op_type != "ConstantOfShape":
        return None
    for attr in node.attribute:
        if attr.name == "value":
            return onnx.numpy_helper.to_array(attr.t).reshape(-1)[0].item()
    return 0.0


def _zero_stand_in(producers: dict, name: str) -> bool:
    """The exporter's all-zero bias stand-in (a 0 fill)."""
    return bool(name) and _constant_fill(producers, name) == 0


def attach_functions(model: onnx.ModelProto) -> None:
    """One FunctionProto per (op, optional-input pattern) that the graph uses.

    Nodes keep all five inputs (the TensorRT plugin's arity) and their bodies read all five: graph
    tools delete function inputs a body never reads without fixing the nodes (onnxslim 0.1.98).
    Where the bias is the exporter's all-zero stand-in the node gets ``zero_bias``, which reads it
    for its type only and skips the 5-D bias add; the all-true mask stand-in is read as a mask (a
    [B, S] gather, nothing per head).
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    used = set()
    for node in seo_nodes(model):
        inputs = list(node.input) + [""] * (5 - len(node.input))
        op = base_op(node.op_type)
        node.overload = overload_for(bool(inputs[3]), bool(inputs[4]), _zero_stand_in(producers, inputs[4]))
        node.op_type = op_type_for(op, node.overload)  # the function's own name (see functions/__init__.py)
        used.add((op, node.overload))
        ordered = sorted(node.attribute, key=lambda a: ATTRIBUTE_ORDER.index(a.name))
        del node.attribute[:]
        node.attribute.extend(ordered)
    opset = default_opset(model)
    for op_type, overload in sorted(used):
        model.functions.append(function_proto(op_type, overload, opset))
    if used and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, OP_VERSION))


def keep_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Keep only ``names`` as graph outputs and drop the nodes nothing reads any more.

    The demoted values keep their names, so they can be promoted again later.
    """
    kept = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    needed = set(names)
    live = []
    for node in reversed(model.graph.node):
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    del model.graph.node[:]
    model.graph.node.extend(live)
    inits = [t for t in model.graph.initializer if t.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)


def promote_outputs(model: onnx.ModelProto, names: list[str]) -> list[str]:
    """Make the named intermediate values graph outputs again; returns those found."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in inferred.graph.value_info}
    produced = {out for node in model.graph.node for out in node.output}
    present = {o.name for o in model.graph.output}
    found = []
    for name in names:
        if name in produced and name not in present:
            info = infos.get(name) or onnx.helper.make_empty_tensor_value_info(name)
            model.graph.output.append(info)
            found.append(name)
    return found


def strip_trace_metadata(model: onnx.ModelProto) -> None:
    """Node metadata holds stack traces with absolute paths: drop it so files are reproducible."""
    for node in model.graph.node:
        del node.metadata_props[:]
    for info in model.graph.value_info:
        del info.metadata_props[:]


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    existing = {e.key: e for e in model.metadata_props}
    for key in sorted(metadata):
        if key in existing:
            existing[key].value = metadata[key]
        else:
            model.metadata_props.add(key=key, value=metadata[key])


def decompose(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline every seo function: the same model with no custom-domain node left."""
    inlined = onnx.inliner.inline_local_functions(model)
    del inlined.functions[:]
    kept = [o for o in inlined.opset_import if o.domain != DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(kept)
    return inlined
