"""Model-local FunctionProtos for the ``seo`` custom nodes (standard ONNX ops only).

A model holding ``seo.LocalWindowAttention`` / ``seo.LandmarkAttention`` nodes carries these
functions, so ONNX Runtime (or any runtime) runs it with no extra library, while TensorRT
with the seo plugins loaded maps the nodes to plugins.

Node contract: inputs ``(q, k, v, key_mask?, rel_bias?)``, q/k/v [B, H, S, D] of type float,
float16 or bfloat16, key_mask [B, S] bool (True = real token), rel_bias [H, 2K+1] of q's type;
output [B, H, S, D] of q's type. Attributes: ``window_left, window_right, scale`` (local) or
``num_landmarks, pinv_iterations, scale`` (landmark), plus ``plugin_namespace, plugin_version``.

A function body cannot test whether an optional input is present, so each op has one
FunctionProto per presence pattern, told apart by ``overload`` (IR >= 10): ``overload_for``
gives the overload a node must carry. Each overload also has a name of its own (``op_type_for``:
``LocalWindowAttention_zero_bias``; the default overload keeps the bare op name), which the
node's op type must match: onnx-tensorrt keys local functions by name alone and would run
the first overload's body for all of them (``seo_plugins.op_names``). All variants declare
the same 5-input signature, and every input a node passes is read (``zero_bias`` reads the
exporter's zero stand-in for its type only), so graph tools that prune unread function inputs
keep the node and its body consistent.
"""

from __future__ import annotations

import functools

import onnx

from seo_export.export.functions import landmark, local_window
from seo_export.export.functions.common import (
    ATTRIBUTES,
    DOMAIN,
    INPUTS,
    LANDMARK,
    LOCAL_WINDOW,
    MIN_OPSET,
    OP_TYPES,
    OP_VERSION,
    OUTPUTS,
    OVERLOADS,
    ZERO_BIAS,
    overload_for,
    presence_of,
)
from seo_plugins.op_names import base_op, op_type_for

_BUILDERS = {LOCAL_WINDOW: local_window.build, LANDMARK: landmark.build}


@functools.lru_cache(maxsize=None)
def _cached(op_type: str, overload: str, opset: int) -> bytes:
    return _BUILDERS[op_type](overload, opset).SerializeToString(deterministic=True)


def function_proto(op_type: str, overload: str, opset: int) -> onnx.FunctionProto:
    """A fresh FunctionProto for ``op_type`` ("LocalWindowAttention" or "LandmarkAttention"), named
    ``op_type_for(op_type, overload)``: the op type its nodes must carry.

    ``overload`` is ``overload_for(has_mask, has_bias)``; ``opset`` is the model's default-domain
    opset (>= 18), which the body imports. Raises ValueError for anything else.
    """
    if op_type not in _BUILDERS:
        raise ValueError(f"unknown seo op {op_type!r}; expected one of {list(OP_TYPES)}")
    presence_of(overload)  # validates the name
    proto = onnx.FunctionProto()
    proto.ParseFromString(_cached(op_type, overload, int(opset)))
    proto.name = op_type_for(op_type, overload)
    return proto


def all_function_protos(opset: int) -> list[onnx.FunctionProto]:
    """Every (op, overload) variant, in a fixed order."""
    return [function_proto(op, ov, opset) for op in OP_TYPES for ov in OVERLOADS]


__all__ = [
    "ATTRIBUTES",
    "DOMAIN",
    "INPUTS",
    "LANDMARK",
    "LOCAL_WINDOW",
    "MIN_OPSET",
    "OP_TYPES",
    "OP_VERSION",
    "OUTPUTS",
    "OVERLOADS",
    "ZERO_BIAS",
    "all_function_protos",
    "base_op",
    "function_proto",
    "op_type_for",
    "overload_for",
]
