"""The round trips of issue 12 and the checker every one of them must pass.

Each tool maps to (run it on a ModelProto in a work folder, what it is known to lose). Known losses
are asserted exactly, so the README's account of each tool stays true for the pinned versions.
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import onnx
import onnxruntime as ort

from seo_export.backends.ort_runner import create_session
from seo_export.backends.tensorrt.builder import check_build_inputs
from seo_export.backends.tensorrt.profiles import parse_profile
from seo_export.errors import UsageError
from seo_export.export.inspect import describe, load_onnx
from seo_export.export.postprocess import seo_nodes
from seo_export.export.toolchain import FP16_ULPS, contract_problems, output_problems, restore, run_tool
from tests.export.helpers import LENGTHS, padded_inputs

PROFILE = parse_profile("batch=1:2:4,seq=1:16:64")
#: What ONNX Runtime's offline optimizer does to an seo model: it runs the bodies inlined.
INLINED = {"seo nodes"}


def graphsurgeon(model, _):
    """onnx-graphsurgeon's own API, as polygraphy's sanitize drives it: import, fold, clean up, export."""
    import onnx_graphsurgeon as gs

    return gs.export_onnx(gs.import_onnx(model).fold_constants().cleanup())


def shape_inference(model, _):
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def ort_optimized(level):
    def optimize(model, workdir):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(workdir / "ort_optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)

    return optimize


def tool(name):
    return lambda model, _: run_tool(name, model)


ROUND_TRIPS = {
    "graphsurgeon": (graphsurgeon, {"metadata", "overload"}),
    "polygraphy": (tool("polygraphy"), {"metadata", "overload"}),
    "onnxslim": (tool("onnxslim"), {"overload"}),
    "onnxsim": (tool("onnxsim"), set()),
    "shape-inference": (shape_inference, set()),
    "ort-basic": (ort_optimized(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC), INLINED),
    "ort-all": (ort_optimized(ort.GraphOptimizationLevel.ORT_ENABLE_ALL), INLINED),
}
#: The Python package each round trip needs (the suite skips one that is not installed).
PACKAGES = {"graphsurgeon": "onnx_graphsurgeon", "polygraphy": "polygraphy", "onnxslim": "onnxslim",
            "onnxsim": "onnxsim"}


def available(name: str) -> bool:
    return PACKAGES.get(name) is None or importlib.util.find_spec(PACKAGES[name]) is not None


def ort_outputs(model) -> list[dict[str, np.ndarray]]:
    """ONNX Runtime's outputs (a path or a ModelProto) at the export tests' lengths, on padded batches."""
    session = create_session(model, ["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, padded_inputs(3, seq)))) for seq in LENGTHS]


def kinds(problems: list[str]) -> set[str]:
    return {problem.split(":")[0] for problem in problems}


def check_round_trip(trip, known_losses: set[str], original: onnx.ModelProto, want, precision: str,
                     workdir) -> list[str]:
    """Everything wrong with ``trip``'s result of ``original``, whose ORT outputs are ``want``."""
    try:
        result = trip(copy.deepcopy(original), workdir)
    except Exception as exc:  # a tool that cannot take the file is a finding, not a crash
        return [f"tool: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]
    problems = []
    try:
        for expected, got in zip(want, ort_outputs(result)):
            problems += output_problems(expected, got, precision)
    except Exception as exc:
        problems.append(f"ort: ONNX Runtime refuses the result: {str(exc).splitlines()[0][-300:]}")
    lost = contract_problems(result, original)
    if not any(node.overload for node in seo_nodes(original)):
        known_losses = known_losses - {"overload"}  # nothing to lose: the default name is ""
    if kinds(lost) != known_losses:
        problems.append(f"contract: expected to lose {sorted(known_losses)}, lost: {lost}")
    path = workdir / "round_trip.onnx"
    onnx.save(result, str(path))
    info = describe(load_onnx(path))  # seo-export inspect's view
    shown = [n for n in info["custom_nodes"] if n["op"].startswith("seo::")]
    if len(shown) != (0 if known_losses == INLINED else len(seo_nodes(original))):
        problems.append(f"inspect: {len(shown)} seo nodes")
    problems += build_check_problems(path, workdir, refused=known_losses == INLINED)
    if known_losses != INLINED:
        restore(result, original)
        problems += [f"after restore: {p}" for p in contract_problems(result, original)]
    return problems


def build_check_problems(path, workdir, refused: bool) -> list[str]:
    """``seo-export build``'s checks before TensorRT: accept the file, or (``refused``) refuse it."""
    try:
        check_build_inputs(path, workdir / "model.engine", [PROFILE])
    except UsageError as exc:
        return [] if refused else [f"build checks: refused: {exc}"]
    return ["build checks: accepted a graph TensorRT cannot build with the seo plugins"] if refused else []


def polygraphy_tolerance(outputs_json, precision: str) -> dict:
    """Per output. FP32: Polygraphy's defaults. FP16: the round-trip rule, as Polygraphy's ONNX Runtime
    session runs fusions seo-export's leaves off (its SkipLayerNormalization rounds an FP16 ulp apart)."""
    if precision == "fp32":
        return {}
    from polygraphy.comparator import RunResults

    ((_, iterations),) = RunResults.load(str(outputs_json))
    return {"atol": {name: FP16_ULPS * float(np.spacing(np.float16(np.abs(np.asarray(value, np.float32)).max())))
                     for name, value in iterations[0].items()}, "rtol": 0.0}
