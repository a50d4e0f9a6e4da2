"""ONNX Runtime's CPU kernels against eager PyTorch on the default model's own shapes.

Run: python -m seo_export.bench.ort_kernels [--rounds 15] [--settle-ms 20] [--out scripts/results]

Three questions, each answered with interleaved timings in one process:
- linear layers: ORT's MatMul + bias Add (MLAS) against ``torch.nn.functional.linear``
  (MKL here) for the three [4, 512, K] x [K, N] projections of the 768/3072 model, and the
  same without the bias. These are most of the model's time, so their ratio bounds how far
  ORT can lead eager PyTorch.
- attention: each seo node as ORT runs it (its ONNX function body) against the eager op the
  model calls, at the model's [4, 12, 512, 64] with a key mask and its window and landmarks.
- fusions: ORT's fused CPU kernels against the unfused ops they replace, which is how
  ``backends.ort_runner.CPU_SLOWER_FUSIONS`` is chosen; and GELU as opset 18's Erf pattern
  against opset 20's single ``Gelu``.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

from seo_export.bench.results import write_results
from seo_export.utils.timing import SETTLE_S, interleaved_times, median, ratio_median

BATCH, SEQ, HIDDEN, FFN = 4, 512, 768, 3072
LINEARS = ((HIDDEN, HIDDEN), (HIDDEN, FFN), (FFN, HIDDEN))
HEADS, HEAD_DIM = 12, 64
THREADS = 2


def _model(nodes, inputs: dict[str, list[int]], constants: dict[str, np.ndarray], opset: int = 20):
    import onnx.helper as oh
    import onnx.numpy_helper as nh
    from onnx import TensorProto

    graph = oh.make_graph(
        nodes, "kernel",
        [oh.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [nh.from_array(value, name) for name, value in constants.items()],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=10)


def _session(model, disabled_fusions: tuple[str, ...] = ()):
    from seo_export.backends.ort_runner import create_session

    return create_session(model, ["CPUExecutionProvider"], THREADS, disabled_fusions)


def _ort_call(session, feeds):
    return lambda: session.run(None, feeds)


def linear_contenders(k: int, n: int, rng) -> dict:
    import onnx.helper as oh
    import torch

    weight = (rng.standard_normal((k, n)) * 0.02).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((BATCH, SEQ, k)).astype(np.float32)
    inputs = {"x": [BATCH, SEQ, k]}
    with_bias = _model([oh.make_node("MatMul", ["x", "w"], ["m"]), oh.make_node("Add", ["m", "b"], ["y"])],
                       inputs, {"w": weight, "b": bias})
    gemm_only = _model([oh.make_node("MatMul", ["x", "w"], ["y"])], inputs, {"w": weight})
    w_t, b_t, x_t = torch.from_numpy(weight.T.copy()), torch.from_numpy(bias), torch.from_numpy(x)
    return {"torch": lambda: torch.nn.functional.linear(x_t, w_t, b_t),
            "ort": _ort_call(_session(with_bias), {"x": x}),
            # The same without the bias: MLAS's GEMM against MKL's, apart from ORT's separate Add.
            "torch_no_bias": lambda: torch.nn.functional.linear(x_t, w_t),
            "ort_no_bias": _ort_call(_session(gemm_only), {"x": x})}


def attention_contenders(rng, batch: int = BATCH, seq: int = SEQ, heads: int = HEADS,
                         head_dim: int = HEAD_DIM) -> dict[str, dict]:
    """{seo op: {"torch": eager op, "ort": the node's body on ORT}} with the default model's settings."""
    import torch

    from seo_export import ops
    from seo_export.bench.export_scaling import seo_node_model
    from seo_export.export.functions import LANDMARK, LOCAL_WINDOW
    from seo_export.models.config import TransformerConfig

    config = TransformerConfig()
    half = config.attention_window_size // 2  # bidirectional: |i - j| <= window // 2
    landmarks, iterations = config.attention_num_landmarks, config.attention_pinv_iterations
    q, k, v = (rng.standard_normal((batch, heads, seq, head_dim)).astype(np.float32) for _ in range(3))
    mask = np.ones((batch, seq), bool)
    mask[-1, seq * 3 // 4:] = False  # one padded row, as in a real batch
    feeds = {"q": q, "k": k, "v": v, "key_mask": mask}
    tq, tk, tv, tm = (torch.from_numpy(a) for a in (q, k, v, mask))
    local = seo_node_model(LOCAL_WINDOW, head_dim, 20, key_mask=True, window_left=half, window_right=half)
    landmark = seo_node_model(LANDMARK, head_dim, 20, key_mask=True, num_landmarks=landmarks,
                              pinv_iterations=iterations)
    return {
        f"seo::{LOCAL_WINDOW} (window {config.attention_window_size})": {
            "torch": lambda: ops.local_window_attention(tq, tk, tv, window_left=half, window_right=half,
                                                        key_padding_mask=tm),
            "ort": _ort_call(_session(local), feeds)},
        f"seo::{LANDMARK} ({landmarks} landmarks)": {
            "torch": lambda: ops.landmark_attention(tq, tk, tv, num_landmarks=landmarks, pinv_iterations=iterations,
                                                    key_padding_mask=tm),
            "ort": _ort_call(_session(landmark), feeds)},
    }


def fusion_contenders(rng) -> dict[str, dict]:
    """{case: {contender: call}}: each fused ORT kernel against the ops it replaces."""
    import onnx.helper as oh

    x = rng.standard_normal((BATCH, SEQ, HIDDEN)).astype(np.float32)
    r = rng.standard_normal((BATCH, SEQ, HIDDEN)).astype(np.float32)
    h = rng.standard_normal((BATCH, SEQ, FFN)).astype(np.float32)
    norm = {"g": np.ones(HIDDEN, np.float32), "beta": np.zeros(HIDDEN, np.float32)}
    add_norm = _model([oh.make_node("Add", ["x", "r"], ["s"]),
                       oh.make_node("LayerNormalization", ["s", "g", "beta"], ["y"], epsilon=1e-12)],
                      {"x": [BATCH, SEQ, HIDDEN], "r": [BATCH, SEQ, HIDDEN]}, norm)
    bias = {"b": rng.standard_normal(FFN).astype(np.float32)}
    add_gelu = _model([oh.make_node("Add", ["x", "b"], ["s"]), oh.make_node("Gelu", ["s"], ["y"])],
                      {"x": [BATCH, SEQ, FFN]}, bias)
    erf_consts = dict(bias, sqrt2=np.array(2 ** 0.5, np.float32), one=np.array(1.0, np.float32),
                      half=np.array(0.5, np.float32))
    erf_gelu = _model([oh.make_node("Add", ["x", "b"], ["s"]), oh.make_node("Div", ["s", "sqrt2"], ["d"]),
                       oh.make_node("Erf", ["d"], ["e"]), oh.make_node("Add", ["e", "one"], ["a"]),
                       oh.make_node("Mul", ["half", "a"], ["m"]), oh.make_node("Mul", ["s", "m"], ["y"])],
                      {"x": [BATCH, SEQ, FFN]}, erf_consts, opset=18)
    residual = {"x": x, "r": r}
    return {
        "residual + LayerNorm": {
            "fused (SkipLayerNormalization)": _ort_call(_session(add_norm), residual),
            "unfused (Add, LayerNormalization)": _ort_call(_session(add_norm, ("SkipLayerNormFusion",)), residual),
        },
        "bias + GELU": {
            "fused (BiasGelu)": _ort_call(_session(add_gelu), {"x": h}),
            "unfused (Add, Gelu)": _ort_call(_session(add_gelu, ("BiasGeluFusion",)), {"x": h}),
            "opset 18 Erf pattern": _ort_call(_session(erf_gelu, ("BiasGeluFusion",)), {"x": h}),
        },
    }


def _median_ms(times: dict[str, list[float]]) -> dict[str, float]:
    return {contender: median(samples) * 1e3 for contender, samples in times.items()}


def measure(rounds: int, settle_s: float = SETTLE_S) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    linears = []
    with torch.inference_mode():
        for k, n in LINEARS:
            times = interleaved_times(linear_contenders(k, n, rng), rounds=rounds, warmup=2, settle_s=settle_s)
            linears.append({"shape": [BATCH, SEQ, k, n], "median_ms": _median_ms(times),
                            "ort_speed_vs_torch": ratio_median(times["torch"], times["ort"]),
                            "no_bias_ort_speed_vs_torch": ratio_median(times["torch_no_bias"], times["ort_no_bias"])})
        attention = {}
        for op, contenders in attention_contenders(rng).items():
            times = interleaved_times(contenders, rounds=rounds, warmup=2, settle_s=settle_s)
            attention[op] = {"median_ms": _median_ms(times),
                             "ort_speed_vs_torch": ratio_median(times["torch"], times["ort"])}
    fusions = {}
    for case, contenders in fusion_contenders(rng).items():
        times = interleaved_times(contenders, rounds=rounds, warmup=2, settle_s=settle_s)
        fusions[case] = _median_ms(times)
    import onnxruntime

    return {
        "benchmark": "ort_kernels",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": THREADS,
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "rounds": rounds,
        "settle_ms": settle_s * 1e3,
        "linears": linears,
        "attention": attention,
        "fusions_ms": fusions,
    }


def to_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"Command: `python -m seo_export.bench.ort_kernels --rounds {result['rounds']} "
             f"--settle-ms {result['settle_ms']:g}` "
             f"(ONNX Runtime {m['onnxruntime']} CPU, torch {m['torch']}, {m['threads']} threads, {m['cpu']}); "
             "medians of interleaved rounds", "",
             "ORT speed vs torch is the median of per-round ratios; without bias: MatMul alone against "
             "`F.linear(x, w)`, which isolates the GEMM kernels from ORT's separate bias Add.", "",
             "| linear [B, S, K] x [K, N] | torch ms | ORT ms | ORT speed vs torch | without bias: torch ms | ORT ms "
             "| ORT speed vs torch |",
             "|---|---|---|---|---|---|---|"]
    for row in result["linears"]:
        b, s, k, n = row["shape"]
        t = row["median_ms"]
        lines.append(f"| [{b}, {s}, {k}] x [{k}, {n}] | {t['torch']:.1f} | {t['ort']:.1f} "
                     f"| {row['ort_speed_vs_torch']:.2f}x | {t['torch_no_bias']:.1f} | {t['ort_no_bias']:.1f} "
                     f"| {row['no_bias_ort_speed_vs_torch']:.2f}x |")
    lines += ["", f"Attention at [{BATCH}, {HEADS}, {SEQ}, {HEAD_DIM}] with a key mask: the eager op against the "
              "node's ONNX function body on ORT.", "",
              "| seo op | torch ms | ORT ms | ORT speed vs torch |", "|---|---|---|---|"]
    for op, row in result["attention"].items():
        t = row["median_ms"]
        lines.append(f"| {op} | {t['torch']:.1f} | {t['ort']:.1f} | {row['ort_speed_vs_torch']:.2f}x |")
    lines += ["", "| ORT CPU kernel | ms |", "|---|---|"]
    for case, timings in result["fusions_ms"].items():
        for contender, ms in timings.items():
            lines.append(f"| {case}: {contender} | {ms:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--settle-ms", type=float, default=SETTLE_S * 1e3,
                        help="pause before each timed call; 0 shows how the previous call's spinning threads "
                             "slow the next (default %(default)g)")
    parser.add_argument("--out", default="scripts/results")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.settle_ms / 1e3)
    write_results(args.out, "ort_kernels", result, to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
