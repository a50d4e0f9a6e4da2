"""Every export with seo nodes, FP32 and FP16, through the tools people run before TensorRT (issue 12):
polygraphy's sanitize (and onnx-graphsurgeon's API under it), onnxslim, onnxsim, strict shape
inference and ONNX Runtime's offline optimizer. After each the file loads in ONNX Runtime with the
same outputs, keeps its seo nodes, bodies and metadata (restored where the tool drops them), and
inspect and build's input checks take it; `polygraphy run --onnxrt` agrees with `seo-export run`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from seo_export.cli.main import main
from tests.export.helpers import VARIANTS, padded_inputs, variant_id
from tests.toolchain.round_trips import ROUND_TRIPS, available, check_round_trip, ort_outputs, polygraphy_tolerance

SEO_VARIANTS = [v for v in VARIANTS if v[0] in ("local", "sparse")]


def polygraphy_agrees(model, inputs_json, outputs_json, precision: str) -> bool:
    """What `polygraphy run MODEL --onnxrt --load-inputs IN --load-outputs OUT` does, in process."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc
    from polygraphy.json import load_json
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        results = Comparator.run([OnnxrtRunner(SessionFromOnnx(str(model)))], data_loader=load_json(str(inputs_json)))
        results.extend(RunResults.load(str(outputs_json)))
        compare = SimpleCompareFunc(**polygraphy_tolerance(outputs_json, precision))
        return bool(Comparator.compare_accuracy(results, compare_func=compare))


def save_run(model, tmp_path, seq=13) -> tuple:
    """`seo-export run` on padded inputs, saving inputs and outputs for Polygraphy."""
    np.savez(tmp_path / "in.npz", **padded_inputs(3, seq))
    ins, outs = tmp_path / "in.json", tmp_path / "out.json"
    assert main(["run", str(model), "--inputs", str(tmp_path / "in.npz"), "--output", str(outs),
                 "--save-inputs", str(ins), "--warmup", "0", "--iterations", "1"]) == 0
    return ins, outs


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", SEO_VARIANTS, ids=variant_id)
def test_export_survives_the_toolchain(exports, tmp_path, variant, precision):
    """One test per file, so each worker exports a file once; every failure is listed."""
    path = exports(variant, precision)
    original, want = onnx.load(path), ort_outputs(path)
    problems = []
    for name, (trip, losses) in ROUND_TRIPS.items():
        if available(name):
            workdir = tmp_path / name
            workdir.mkdir()
            problems += [f"{name}: {p}" for p in check_round_trip(trip, losses, original, want, precision, workdir)]
    if available("polygraphy") and not polygraphy_agrees(path, *save_run(path, tmp_path), precision):
        problems.append("polygraphy run --onnxrt: outputs differ from seo-export run's")
    assert not problems, "\n".join(problems)
    missing = [name for name in ROUND_TRIPS if not available(name)]
    if missing:
        pytest.skip(f"not installed, so not tried: {', '.join(missing)}")


def test_polygraphy_comparison_fails_on_other_outputs(exports, tmp_path):
    """The comparison is seen to fail: outputs saved for other inputs are refused."""
    pytest.importorskip("polygraphy")
    path = exports(("local", "rotary", False), "fp16")
    ins, outs = save_run(path, tmp_path)
    assert polygraphy_agrees(path, ins, outs, "fp16")
    np.savez(tmp_path / "other.npz", **padded_inputs(3, 13, seed=1))
    assert main(["run", str(path), "--inputs", str(tmp_path / "other.npz"), "--output", str(outs), "--warmup", "0",
                 "--iterations", "1"]) == 0
    assert not polygraphy_agrees(path, ins, outs, "fp16")
