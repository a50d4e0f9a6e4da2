"""Which seo nodes TensorRT must run on the plugins' JIT path, and marking them so.

The network prefers the AOT implementations (PTX launched by TensorRT, no Python at run time;
``builder.network_flags``). Where no AOT kernel exists for a node's attributes (the single
landmark kernel fits 48 KiB of shared memory only up to 32 landmarks) the node's ``aot``
attribute, which TensorRT's parser reads, is set to 0 so the plugin's JIT implementation
(Triton launched from Python) runs it instead of the build failing. A node that already
carries ``aot`` keeps the user's choice.
"""

from __future__ import annotations

import onnx
import onnx.helper as oh

from seo_export.export.inspect import node_attributes
from seo_export.export.postprocess import seo_nodes

AOT_ATTRIBUTE = "aot"


def aot_problem(node: onnx.NodeProto) -> str | None:
    """Why no AOT kernel exists for ``node``, or None."""
    from seo_plugins.launch import landmark_aot_problem
    from seo_plugins.op_names import LANDMARK, base_op

    if base_op(node.op_type) == LANDMARK:
        return landmark_aot_problem(int(node_attributes(node)["num_landmarks"]))
    return None


def mark_jit_nodes(model: onnx.ModelProto) -> list[str]:
    """Set ``aot = 0`` on the seo nodes that have no AOT kernel (in place); one note per node marked."""
    notes = []
    for node in seo_nodes(model):
        if any(a.name == AOT_ATTRIBUTE for a in node.attribute):
            continue
        problem = aot_problem(node)
        if problem:
            node.attribute.append(oh.make_attribute(AOT_ATTRIBUTE, 0))
            notes.append(f"node {node.name!r} (seo::{node.op_type}) runs on the plugin's JIT path, so the engine needs "
                         f"Python, PyTorch and Triton where it runs: {problem.split(';')[0]}")
    return notes
