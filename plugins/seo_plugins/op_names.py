"""The op types seo nodes carry: one per (op, overload), shared by the exporter and the TensorRT plugins.

ONNX finds a node's FunctionProto by (domain, name, overload), but onnx-tensorrt keys model-local
functions by name alone (``importLocalFunctions``: ``localFunctions().insert({name, function})``),
so overloads sharing a name collapse to the first one when TensorRT parses without the plugins.
Each overload therefore gets a name of its own: the op's name for the default overload (both
optional inputs present and read), which old files and the plugin ids already use, and
``<op>_<overload>`` for the others. TensorRT finds a plugin by the node's op type, so the plugins
are registered under the name of every overload whose nodes carry all five inputs.

Plain Python with no imports: ``seo_plugins.trt`` registers the plugins when imported, which the
exporter must not trigger.
"""

from __future__ import annotations

LOCAL_WINDOW = "LocalWindowAttention"
LANDMARK = "LandmarkAttention"
BASE_OPS = (LOCAL_WINDOW, LANDMARK)


def op_type_for(op: str, overload: str) -> str:
    """The node op type and function name of ``op``'s ``overload`` ("" is the default overload)."""
    if op not in BASE_OPS:
        raise ValueError(f"unknown seo op {op!r}; expected one of {list(BASE_OPS)}")
    return f"{op}_{overload}" if overload else op


def base_op(op_type: str) -> str | None:
    """The seo op an op type belongs to (``LocalWindowAttention_zero_bias`` -> ``LocalWindowAttention``),
    None for anything else. Files exported before per-overload names carry the bare op name."""
    for op in BASE_OPS:
        if op_type == op or op_type.startswith(f"{op}_"):
            return op
    return None
