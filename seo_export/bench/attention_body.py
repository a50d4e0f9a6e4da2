"""How close the ``seo::LocalWindowAttention`` function body comes to the CPU's float32 matmul peak.

Issue 14's goal for the body as ONNX Runtime runs it: 25% of the matmul peak at S = 8192.
One node (its FunctionProto body) on q, k, v [1, H, S, D] is timed interleaved with
float32 matmuls (n^3, ONNX Runtime's and numpy's; the fastest is the peak), and, with
``--baseline-rev REV``, with the body as it was at git revision REV, so a change to the body
is judged in the same run as what it replaces. Useful FLOPs are the band's (4 * H * D * pairs),
as in ``seo_export.bench.export_scaling``.

With ``--model-seq S`` (and a baseline) the whole exported local model (export_scaling's: 12
layers, hidden 768, window 128; INT8 linear layers unless ``--model-precision fp32``) is also
timed at batch 1, length S, against the same file with the baseline's body swapped into its
functions: what the change is worth where the body runs. ``--ceiling`` also times bodies with
work left out (``body_ceiling``): how far the body's structure could go at most.

Run: python -m seo_export.bench.attention_body [--seq 8192] [--baseline-rev c11ac3a] [--mask]
     [--model-seq 8192 [--model-precision fp32]] [--regime warm|cold] [--ceiling] [--rounds 9]
     [--out scripts/results]  ->  attention_body.json and .md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from seo_export.bench import body_ceiling
from seo_export.bench.export_scaling import (
    MATMUL_SIZES,
    band_pairs,
    matmul_contenders,
    ort_session,
    seo_node_model,
)
from seo_export.utils.environment import cpu_model, load_average, package_version
from seo_export.utils.timing import BLAS_SETTLE_S, interleaved_times, median, percentile, speedup

GOAL_FRACTION_OF_PEAK = 0.25
#: How each sample is taken (``utils.timing.interleaved_times``). Warm, the default: after the
#: settle pause one untimed call, then the mean of 4 back-to-back calls, as the body runs between
#: other ops inside a model (and as trtexec or onnxruntime_perf_test time). Cold: one call after
#: the pause, as a request after an idle spell; here that added ~2.5 ms to a ~10 ms body.
REGIMES = {"warm": {"warm_calls": 1, "calls": 4}, "cold": {}}
BODY_PATH = "seo_export/export/functions/local_window.py"


def body_at_revision(rev: str):
    """The local-window body builder of git revision ``rev`` (run against today's shared fragments)."""
    root = Path(__file__).resolve().parents[2]
    try:
        source = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{BODY_PATH}"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"cannot read {BODY_PATH} at revision {rev!r}: {getattr(exc, 'stderr', exc)}".strip())
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    try:
        spec = importlib.util.spec_from_file_location(f"local_window_{rev}", f.name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.unlink(f.name)
    return module.build


def node_model(head_dim: int, window_left: int, window_right: int, mask: bool, build=None):
    from seo_export.export.functions import LOCAL_WINDOW

    model = seo_node_model(LOCAL_WINDOW, head_dim, key_mask=mask, window_left=window_left,
                           window_right=window_right)
    return model if build is None else with_body(model, build)


def with_body(model, build):
    """A copy of ``model`` whose local-window functions are ``build``'s (under the names the model
    calls them: older bodies named every overload after the op)."""
    import onnx

    from seo_export.export.functions import LOCAL_WINDOW, base_op

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    opset = next(o.version for o in copy.opset_import if o.domain in ("", "ai.onnx"))
    for function in copy.functions:
        if base_op(function.name) == LOCAL_WINDOW:
            proto = build(function.overload, opset)
            proto.name = function.name
            function.CopyFrom(proto)
    return copy


def model_comparison(seq: int, baseline_rev: str, rounds: int, threads: int, precision: str = "int8") -> dict:
    """The exported local model (``precision`` fp32 or int8, the linear layers dynamically quantized) at
    batch 1, length ``seq``: its body against ``baseline_rev``'s, interleaved."""
    from seo_export.bench.export_scaling import model_config
    from seo_export.bench.sweep import bench_inputs
    from seo_export.export.exporter import build_onnx
    from seo_export.export.quantize import quantize_model
    from seo_export.models.build import build_model

    config = model_config()
    current = build_onnx(build_model(config, seed=0))
    if precision == "int8":
        current = quantize_model(current)
    sessions = {"model": ort_session(current, threads),
                f"model@{baseline_rev}": ort_session(with_body(current, body_at_revision(baseline_rev)), threads)}
    feeds = bench_inputs(1, seq, config.vocab_size)
    outputs = {name: s.run(None, feeds) for name, s in sessions.items()}
    agreement = max(float(np.abs(a - b).max()) for a, b in zip(*outputs.values()))
    samples = interleaved_times({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()},
                                rounds=rounds, warmup=1)
    base, new = samples[f"model@{baseline_rev}"], samples["model"]
    return {"seq": seq, "batch": 1, "precision": precision, "layers": config.num_layers, "hidden": config.hidden_size,
            "window": config.attention_window_size, "samples_s": samples,
            "median_s": {name: median(t) for name, t in samples.items()}, "max_abs_vs_baseline": agreement,
            "speedup": speedup(base, new)}


def peak_fractions(samples: dict[str, list[float]], matmul_flops: dict[str, float], useful_flops: float,
                   names) -> tuple[float, dict]:
    """The median matmul peak (FLOP/s) and, for each of ``names``, its fraction of that peak (median,
    p10, p90). The peak of each round is the fastest matmul of that round, so drift is shared within
    a round."""
    rounds = len(next(iter(samples.values())))
    peaks = [max(flops / samples[name][i] for name, flops in matmul_flops.items()) for i in range(rounds)]
    fractions = {name: [useful_flops / samples[name][i] / peaks[i] for i in range(rounds)] for name in names}
    return median(peaks), {name: {"median": median(f), "p10": percentile(f, 10), "p90": percentile(f, 90)}
                           for name, f in fractions.items()}


def measure(seqs: list[int], heads: int = 2, head_dim: int = 64, window: int = 128, rounds: int = 9,
            threads: int | None = None, mask: bool = False, baseline_rev: str | None = None,
            matmul_sizes: tuple[int, ...] = MATMUL_SIZES, model_seq: int | None = None,
            model_precision: str = "int8", regime: str = "warm", ceiling: bool = False) -> dict:
    threads = threads or os.cpu_count() or 1
    left = right = window // 2
    current = node_model(head_dim, left, right, mask)
    sessions = {"body": ort_session(current, threads)}
    if baseline_rev:
        sessions[f"body@{baseline_rev}"] = ort_session(
            node_model(head_dim, left, right, mask, body_at_revision(baseline_rev)), threads)
    if ceiling:
        body_ceiling.check_shape(seqs, window, mask)
        for name, build in body_ceiling.ceiling_builds().items():
            sessions[name] = ort_session(node_model(head_dim, left, right, mask, build), threads)
    rng = np.random.default_rng(0)
    matmuls, matmul_flops, matmul_settle = matmul_contenders(matmul_sizes, threads, rng)
    load_start = load_average()
    rows = []
    for seq in seqs:
        feeds = {name: rng.standard_normal((1, heads, seq, head_dim), dtype=np.float32) for name in "qkv"}
        if mask:  # a real document's padding: the last eighth of the keys
            feeds["key_mask"] = np.arange(seq)[None, :] < seq - seq // 8
        reference = sessions["body"].run(None, feeds)[0]
        agreement = {name: float(np.abs(s.run(None, feeds)[0] - reference).max()) for name, s in sessions.items()}
        contenders = {name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}
        samples = interleaved_times({**contenders, **matmuls}, rounds=rounds, warmup=1, settle_after=matmul_settle,
                                    **REGIMES[regime])
        useful = 4 * heads * head_dim * band_pairs(seq, left, right)
        peak, fractions = peak_fractions(samples, matmul_flops, useful, sessions)
        row = {
            "seq": seq, "band_flops": useful, "samples_s": samples, "max_abs_vs_body": agreement,
            "median_s": {name: median(t) for name, t in samples.items()},
            "peak_flop_per_s": peak, "fraction_of_peak": fractions,
        }
        if baseline_rev:
            row["speedup_vs_baseline"] = {"body": speedup(samples[f"body@{baseline_rev}"], samples["body"])}
        if ceiling:
            row["ceiling_speedup_vs_body"] = {name: speedup(samples["body"], samples[name])
                                              for name in body_ceiling.CEILINGS}
        rows.append(row)
    last = rows[-1]["fraction_of_peak"]["body"]["median"]
    model = (model_comparison(model_seq, baseline_rev, rounds, threads, model_precision)
             if model_seq and baseline_rev else None)
    return {
        "benchmark": "attention_body",
        "command": shlex.join(["python", "-m", "seo_export.bench.attention_body", *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "ort_intra_op_threads": threads,
                    "load_average_1min": {"start": load_start, "end": load_average()},
                    "python": platform.python_version(), "onnxruntime": package_version("onnxruntime")},
        "shape": {"batch": 1, "heads": heads, "head_dim": head_dim, "window_left": left, "window_right": right,
                  "key_mask": mask, "matmul_sizes": list(matmul_sizes)},
        "rounds": rounds, "regime": regime, "timing": REGIMES[regime], "baseline_rev": baseline_rev, "rows": rows,
        "ceiling": ceiling,
        "model": model,
        "goal": {"goal": f">= {GOAL_FRACTION_OF_PEAK:.0%} of the matmul peak at S={rows[-1]['seq']}",
                 "value": last, "met": last >= GOAL_FRACTION_OF_PEAK},
    }


def _regime_words(result: dict) -> str:
    timing = result["timing"]
    if result["regime"] == "cold":
        return "each sample one cold call after the settle pause (an idle spell's cost included)"
    return (f"each sample warm: {timing['warm_calls']} untimed call after the settle pause, then the mean of "
            f"{timing['calls']} back-to-back calls, as between other ops in a model")


def speedup_text(s: dict, bold: bool = True) -> str:
    """A ``utils.timing.speedup`` record as the results print it: 1.38x [1.29, 1.42]."""
    value = f"**{s['median']:.2f}x**" if bold else f"{s['median']:.2f}x"
    interval = s["interval_95"]
    return value + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def to_markdown(result: dict) -> str:
    shape, m = result["shape"], result["machine"]
    names = list(result["rows"][0]["fraction_of_peak"])
    lines = ["# The seo::LocalWindowAttention body against the float32 matmul peak (issue 14)", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {m['cpu']} x {m['cores']}, ORT intra-op threads {m['ort_intra_op_threads']}, load average "
             f"{m['load_average_1min']['start']} -> {m['load_average_1min']['end']}; onnxruntime {m['onnxruntime']}.",
             "",
             f"q, k, v [1, {shape['heads']}, S, {shape['head_dim']}], window_left = window_right = "
             f"{shape['window_left']}, key mask {'on (last eighth padded)' if shape['key_mask'] else 'off'}; "
             f"{result['rounds']} interleaved rounds, {_regime_words(result)}. "
             "Peak: per round, the fastest of ONNX Runtime's MatMul and "
             f"numpy's matmul at n = {', '.join(map(str, shape['matmul_sizes']))}, with {BLAS_SETTLE_S:g} s of "
             "settle after numpy's (its BLAS threads spin ~0.1 s and slowed the next contender 1.5x at 20 ms).", "",
             f"**Goal {result['goal']['goal']}: {result['goal']['value']:.1%}, "
             f"{'met' if result['goal']['met'] else 'NOT met'}.**", "",
             "| S | contender | median ms | % of peak (p10-p90) | max abs vs body |"
             + (" speedup vs baseline [95%] |" if result["baseline_rev"] else ""),
             "|---|---|---|---|---|" + ("---|" if result["baseline_rev"] else "")]
    for r in result["rows"]:
        for name in names:
            f = r["fraction_of_peak"][name]
            line = (f"| {r['seq']} | {name} | {r['median_s'][name] * 1e3:.1f} | {f['median']:.1%} "
                    f"({f['p10']:.1%}-{f['p90']:.1%}) | {r['max_abs_vs_body'][name]:.1e} |")
            if result["baseline_rev"]:
                s = r["speedup_vs_baseline"].get(name)
                line += " |" if s is None else f" {speedup_text(s, bold=False)} |"
            lines.append(line)
        lines.append(f"| {r['seq']} | matmul peak | | {r['peak_flop_per_s'] / 1e9:.0f} GFLOP/s | | "
                     + ("|" if result["baseline_rev"] else ""))
    if result.get("ceiling"):
        lines += ["", "Ceilings (`--ceiling`, `seo_export.bench.body_ceiling`), timing only: the body without its "
                  "key-range pass (so wrong near the sequence ends: their max abs vs body), then also without the "
                  "trailing trim and with K and V gathered as whole 64-row blocks (both exact only where S is a "
                  "multiple of 64). How much faster than the body, interleaved:", ""]
        for r in result["rows"]:
            for name, s in r["ceiling_speedup_vs_body"].items():
                lines.append(f"- S = {r['seq']}, {name}: {speedup_text(s)}, "
                             f"{r['fraction_of_peak'][name]['median']:.1%} of the peak")
    model = result.get("model")
    if model:
        s = model["speedup"]
        rev = result["baseline_rev"]
        lines += ["", f"Whole exported local model ({model['precision'].upper()}, {model['layers']} layers, hidden "
                  f"{model['hidden']}, window "
                  f"{model['window']}), batch 1, S = {model['seq']}, {result['rounds']} interleaved rounds: "
                  f"{model['median_s']['model']:.2f} s against {model['median_s'][f'model@{rev}']:.2f} s with the "
                  f"body of {rev}, {speedup_text(s)} (outputs within {model['max_abs_vs_baseline']:.1e})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from seo_export.bench.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", default="8192", help="comma-separated sequence lengths (default 8192)")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--mask", action="store_true", help="time the key-mask overload (last eighth padded)")
    parser.add_argument("--baseline-rev", default=None, help="also time the body of this git revision")
    parser.add_argument("--model-seq", type=int, default=None,
                        help="with --baseline-rev: also time the exported local model at this length, both bodies")
    parser.add_argument("--model-precision", choices=("int8", "fp32"), default="int8",
                        help="the compared model's linear layers (default int8, where the body weighs most)")
    parser.add_argument("--regime", choices=tuple(REGIMES), default="warm",
                        help="warm (default): back-to-back calls, as inside a model; cold: one call after idling")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time timing-only bodies without parts a correct one needs (body_ceiling)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="scripts/results")
    parser.add_argument("--name", default="attention_body", help="results file stem")
    args = parser.parse_args(argv)
    if args.model_seq and not args.baseline_rev:
        parser.error("--model-seq compares the model with two bodies: give --baseline-rev too")
    result = measure([int(s) for s in args.seq.split(",")], heads=args.heads, window=args.window,
                     rounds=args.rounds, threads=args.threads, mask=args.mask, baseline_rev=args.baseline_rev,
                     model_seq=args.model_seq, model_precision=args.model_precision, regime=args.regime,
                     ceiling=args.ceiling)
    write_results(args.out, args.name, result, to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
