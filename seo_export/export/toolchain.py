"""Graph tools people run on exported files before TensorRT: run one, put back what it drops, and
say what a round trip broke.

Measured with polygraphy 0.53.6 (onnx-graphsurgeon 0.6.1), onnxslim 0.1.98 and onnxsim 0.8.1 (README,
"Graph tools"): polygraphy's sanitize drops the model's metadata and the ``overload`` names of nodes
and functions, onnxslim drops the overload names, onnxsim keeps both. Each overload's function has
a name of its own (the node's op type), so an overload name dropped on node and function alike
still resolves; ``restore`` puts the names and the metadata back from the file the tool was given.
"""

from __future__ import annotations

import importlib
from collections import Counter

import numpy as np
import onnx

from seo_export.errors import MissingDependencyError
from seo_export.export.functions import ATTRIBUTES, DOMAIN, INPUTS, OUTPUTS, base_op
from seo_export.export.inspect import node_attributes
from seo_export.export.postprocess import seo_nodes

TOOLS = ("polygraphy", "onnxslim", "onnxsim")
INSTALL_HINT = 'pip install "seo-export[tools]"'
#: Round-trip tolerances. FP32: Polygraphy's own default (every measured round trip is bit-exact;
#: this leaves room for a re-associated float32 op at O(1) magnitudes). FP16: ulps at the output's
#: largest magnitude, one re-rounding of a folded or reordered FP16 op each side.
FP32_TOLERANCE = 1e-5
FP16_ULPS = 2


def require_module(name: str, missing: str):
    """``import name``, or a one-line MissingDependencyError saying ``missing``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(missing) from None


def _module(name: str, tool: str):
    return require_module(name, f"{tool} is not installed; {INSTALL_HINT}")


def run_tool(tool: str, model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` through ``tool``, in process: polygraphy runs what ``polygraphy surgeon sanitize
    --fold-constants`` runs (onnx-graphsurgeon's folding), onnxslim and onnxsim their defaults."""
    if tool == "polygraphy":
        fold = _module("polygraphy.backend.onnx", tool).fold_constants
        logger = _module("polygraphy.logger", tool).G_LOGGER
        with logger.verbosity(logger.ERROR):  # its per-pass INFO lines go to stdout
            return fold(model)
    if tool == "onnxslim":
        return _module("onnxslim", tool).slim(model)
    if tool == "onnxsim":
        simplified, _ = _module("onnxsim", tool).simplify(model)
        return simplified
    raise ValueError(f"unknown tool {tool!r}; expected one of {TOOLS}")


def _function_overloads(model: onnx.ModelProto) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for function in model.functions:
        if function.domain == DOMAIN:
            names.setdefault(function.name, []).append(function.overload)
    return names


def restore(model: onnx.ModelProto, source: onnx.ModelProto) -> list[str]:
    """Put back, from ``source``, the metadata entries ``model`` lacks and the seo overload names a tool
    blanked (only where the op has one function on both sides). Returns what was restored."""
    restored = []
    keys = {prop.key for prop in model.metadata_props}
    missing = [prop for prop in source.metadata_props if prop.key not in keys]
    for prop in missing:
        model.metadata_props.add(key=prop.key, value=prop.value)
    if missing:
        restored.append(f"{len(missing)} metadata entries")
    wanted, have = _function_overloads(source), _function_overloads(model)
    for function in model.functions:
        name = function.name
        if function.domain == DOMAIN and have.get(name) == [""] and len(wanted.get(name, [])) == 1 and wanted[name][0]:
            function.overload = wanted[name][0]
            for node in seo_nodes(model):
                if node.op_type == name and not node.overload:
                    node.overload = function.overload
            restored.append(f"overload {name}[{function.overload}]")
    return restored


def _node_signature(node: onnx.NodeProto) -> tuple:
    return node.op_type, node.overload, len(node.input), tuple(sorted(node_attributes(node).items()))


def contract_problems(model: onnx.ModelProto, source: onnx.ModelProto) -> list[str]:
    """What ``model`` lost against ``source``, each as ``kind: detail`` (kind: metadata, overload,
    seo nodes, functions); empty when its seo nodes, bodies and metadata all survived."""
    problems = []
    values = {prop.key: prop.value for prop in model.metadata_props}
    lost = [p.key for p in source.metadata_props if values.get(p.key) != p.value]
    if lost:
        problems.append(f"metadata: {len(lost)} entries lost or changed (first: {lost[0]})")
    before, after = Counter(map(_node_signature, seo_nodes(source))), Counter(map(_node_signature, seo_nodes(model)))
    if before != after:
        unnamed = Counter((s[0], "") + s[2:] for s in before.elements())
        kind = "overload" if unnamed == Counter(after.elements()) else "seo nodes"
        problems.append(f"{kind}: {sum(before.values())} seo nodes before, {sum(after.values())} after; "
                        f"first changed: {next(iter((before - after) or (after - before)))[:2]}")
    functions = {(f.domain, f.name, f.overload): f for f in model.functions}
    for op_type, overload in sorted({(n.op_type, n.overload) for n in seo_nodes(model)}):
        function = functions.get((DOMAIN, op_type, overload))
        if function is None:
            problems.append(f"functions: no body for {DOMAIN}::{op_type}[{overload}]")
        elif (tuple(function.input), tuple(function.output), tuple(function.attribute)) != (
                INPUTS, OUTPUTS, ATTRIBUTES.get(base_op(op_type))) or not function.node:
            problems.append(f"functions: {op_type}[{overload}] no longer declares the node contract "
                            f"(inputs {list(function.input)})")
    return problems


def output_problems(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], precision: str) -> list[str]:
    """Outputs that leave the round-trip tolerance of a file of ``precision`` (see FP32_TOLERANCE)."""
    problems = []
    for name, want in reference.items():
        have = got.get(name)
        if have is None or have.shape != want.shape:
            problems.append(f"outputs: {name} missing or reshaped")
            continue
        want64 = want.astype(np.float64)
        error = np.abs(have.astype(np.float64) - want64)
        if precision == "fp16":
            bound = FP16_ULPS * float(np.spacing(np.float16(np.abs(want64).max(initial=0.0))))
            allowed = np.full_like(want64, bound)
        else:
            allowed = FP32_TOLERANCE + FP32_TOLERANCE * np.abs(want64)
        if not (error <= allowed).all():
            problems.append(f"outputs: {name} max abs error {error.max():.3g} beyond the {precision} round-trip "
                            f"tolerance ({allowed.max():.3g})")
    return problems
