"""Issue 3's performance numbers: the exported models on ONNX Runtime, and export time.

Three measurements, each with its goal:

1. **Model scaling.** The exported local-attention model (default sizes unless told otherwise:
   hidden 768, 12 heads, FFN 3072, window 128, sinusoidal positions) on ONNX Runtime at batch 1
   and S = 1k, 2k, 4k, 8k, and the same model with standard attention at S = 4k, all timed
   interleaved in one run. Goals: local time grows at most 10x from 1k to 8k; local is faster
   than standard at 4k.
2. **Attention FLOP/s.** One ``seo::LocalWindowAttention`` node (its FunctionProto body, as ONNX
   Runtime runs it in the exported models) and dense attention with a band mask (MatMul, Where,
   Softmax, MatMul over the full S x S matrix) on q, k, v [1, H, S, D], against float32
   matmuls (n^3, n = 1024 and 2048; ONNX Runtime's MatMul and numpy's) measured interleaved with
   them; the fastest is the peak. Useful FLOPs are the band's: 4 * B * H * D * (query, key) pairs in the band,
   which is 4 * B * H * S * band * D less the clipped band at the sequence ends. Goal: 25% of
   peak at S = 8k (the issue's baseline: dense attention with a band mask reaches ~0.5%).
3. **Export time.** All 16 attention x positional variants at the test suite's small size
   (hidden 32, 2 layers, 4 heads, window 8, 4 landmarks), exported to FP32 ONNX one after the
   other in this process, first export's start-up included. Goal: under 90 s on 2 cores.

Run: python -m seo_export.bench.export_scaling [--seq 1024,2048,4096,8192] [--num-layers 12]
     [--rounds 3] [--out scripts/results]  ->  export_scaling.json and export_scaling.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seo_export.utils.environment import cpu_model, load_average, package_version
from seo_export.utils.timing import BLAS_SETTLE_S, interleaved_times, median

GOAL_GROWTH = 10.0
GOAL_FRACTION_OF_PEAK = 0.25
GOAL_EXPORT_S = 90.0
# float32 matmul references, n x n x n: 1024 is the size of the band attention's work at S = 4k..8k
# (2.1 GFLOP); 2048 runs closer to what the cores can do. The peak is the fastest of them.
MATMUL_SIZES = (1024, 2048)


# ----------------------------------------------------------------------------- ORT helpers

def ort_session(model_or_path, threads: int):
    from seo_export.backends.ort_runner import create_session

    return create_session(model_or_path, ["CPUExecutionProvider"], threads)


def seo_node_model(op_type: str, head_dim: int, opset: int = 18, key_mask: bool = False, **attributes):
    """One seo node over q, k, v [B, H, S, D] (and key_mask [B, S] when asked) with its model-local function."""
    import onnx
    import onnx.helper as oh

    from seo_export.export.functions import DOMAIN, OP_VERSION, function_proto, op_type_for, overload_for

    inputs = ["q", "k", "v"] + (["key_mask"] if key_mask else [])
    overload = overload_for(key_mask, False)
    node = oh.make_node(op_type_for(op_type, overload), inputs, ["out"], domain=DOMAIN, scale=head_dim ** -0.5,
                        plugin_namespace="seo", plugin_version="1", **attributes)
    node.overload = overload
    dims = ["B", "H", "S", "D"]
    values = [oh.make_tensor_value_info(x, onnx.TensorProto.FLOAT, dims) for x in "qkv"]
    if key_mask:
        values.append(oh.make_tensor_value_info("key_mask", onnx.TensorProto.BOOL, ["B", "S"]))
    graph = oh.make_graph([node], f"{op_type}_node", values, [oh.make_tensor_value_info("out", onnx.TensorProto.FLOAT,
                                                                                          dims)])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset), oh.make_opsetid(DOMAIN, OP_VERSION)],
                         functions=[function_proto(op_type, node.overload, opset)], ir_version=10)


def local_node_model(window_left: int, window_right: int, head_dim: int, opset: int = 18):
    """One seo::LocalWindowAttention node over q, k, v [B, H, S, D] with its model-local function."""
    from seo_export.export.functions import LOCAL_WINDOW

    return seo_node_model(LOCAL_WINDOW, head_dim, opset, window_left=window_left, window_right=window_right)


def dense_band_model(head_dim: int, opset: int = 18):
    """What users write without the op: the full S x S logits, a boolean band mask, softmax, @ V."""
    import onnx
    import onnx.helper as oh

    f = onnx.TensorProto.FLOAT
    nodes = [
        oh.make_node("Transpose", ["k"], ["k_t"], perm=[0, 1, 3, 2]),
        oh.make_node("MatMul", ["q", "k_t"], ["qk"]),
        oh.make_node("Mul", ["qk", "scale"], ["logits"]),
        oh.make_node("Where", ["band", "logits", "neg_inf"], ["masked"]),
        oh.make_node("Softmax", ["masked"], ["probs"], axis=-1),
        oh.make_node("MatMul", ["probs", "v"], ["out"]),
    ]
    dims = ["B", "H", "S", "D"]
    inputs = [oh.make_tensor_value_info(x, f, dims) for x in "qkv"]
    inputs.append(oh.make_tensor_value_info("band", onnx.TensorProto.BOOL, ["S", "S"]))
    constants = [oh.make_tensor("scale", f, [], [head_dim ** -0.5]), oh.make_tensor("neg_inf", f, [], [-np.inf])]
    graph = oh.make_graph(nodes, "dense_band_attention", inputs, [oh.make_tensor_value_info("out", f, dims)],
                          initializer=constants)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=10)


def matmul_model(n: int, opset: int = 18):
    import onnx
    import onnx.helper as oh

    f = onnx.TensorProto.FLOAT
    graph = oh.make_graph([oh.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                          [oh.make_tensor_value_info("a", f, [n, n]), oh.make_tensor_value_info("b", f, [n, n])],
                          [oh.make_tensor_value_info("c", f, [n, n])])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=10)


def band_pairs(seq: int, window_left: int, window_right: int) -> int:
    """(query, key) pairs with -window_left <= j - i <= window_right inside [0, seq)."""
    i = np.arange(seq, dtype=np.int64)
    return int((np.minimum(seq - 1, i + window_right) - np.maximum(0, i - window_left) + 1).sum())


# ----------------------------------------------------------------------------- 1. model scaling

def model_config(hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12, intermediate_size: int = 3072,
                 window: int = 128, positional: str = "sinusoidal"):
    from seo_export.models.config import TransformerConfig

    return TransformerConfig(hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                             intermediate_size=intermediate_size, attention_window_size=window,
                             positional_encoding_type=positional, attention_type="local",
                             dropout_rate=0.0, attention_dropout=0.0)


def model_scaling(config, seqs: list[int], standard_seq: int, rounds: int, threads: int, directory: Path) -> dict:
    """ORT seconds per call of the local model at each S and of the standard model at ``standard_seq``,
    all timed interleaved in one run."""
    from seo_export.bench.sweep import bench_inputs
    from seo_export.export import export_onnx
    from seo_export.models.build import build_model

    sessions = {}
    for attention in ("local", "standard"):
        model = build_model(config.replace(attention_type=attention), seed=0)
        path = directory / f"{attention}.onnx"
        export_onnx(model, path, precision="fp32")
        sessions[attention] = ort_session(path, threads)
    contenders = {}
    for attention, seq in [("local", s) for s in seqs] + [("standard", standard_seq)]:
        feeds = bench_inputs(1, seq, config.vocab_size)
        contenders[f"{attention}@{seq}"] = (lambda s=sessions[attention], f=feeds: s.run(None, f))
    samples = interleaved_times(contenders, rounds=rounds, warmup=1)
    med = {name: median(times) for name, times in samples.items()}
    local = {seq: med[f"local@{seq}"] for seq in seqs}
    growth = local[max(seqs)] / local[min(seqs)]
    standard = med[f"standard@{standard_seq}"]
    result = {
        "config": {k: config.to_dict()[k] for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                                                    "attention_window_size", "positional_encoding_type")},
        "batch": 1,
        "rounds": rounds,
        "local_s": {str(s): t for s, t in local.items()},
        "local_samples_s": {str(s): samples[f"local@{s}"] for s in seqs},
        "standard_seq": standard_seq,
        "standard_s": standard,
        "standard_samples_s": samples[f"standard@{standard_seq}"],
        "growth": {"from": min(seqs), "to": max(seqs), "factor": growth},
    }
    if standard_seq in local:
        result["local_vs_standard"] = {"seq": standard_seq, "speedup": standard / local[standard_seq]}
    return result


# ----------------------------------------------------------------------------- 2. attention FLOP/s

def matmul_contenders(sizes, threads: int, rng) -> tuple[dict, dict, dict]:
    """The float32 matmul references (n^3; ONNX Runtime's MatMul and numpy's per n): the calls, their
    FLOPs, and the settle each needs after it (numpy's BLAS threads spin on, ``BLAS_SETTLE_S``)."""
    calls, flops = {}, {}
    for n in sizes:
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        session = ort_session(matmul_model(n), threads)
        calls[f"ort_matmul_{n}"] = (lambda s=session, a=a, b=b: s.run(None, {"a": a, "b": b}))
        calls[f"np_matmul_{n}"] = (lambda a=a, b=b: np.matmul(a, b))
        flops[f"ort_matmul_{n}"] = flops[f"np_matmul_{n}"] = 2 * n ** 3
    return calls, flops, {f"np_matmul_{n}": BLAS_SETTLE_S for n in sizes}


def attention_flops(seqs: list[int], heads: int, head_dim: int, window: int, rounds: int, threads: int,
                    matmul_sizes: tuple[int, ...] = MATMUL_SIZES) -> dict:
    """Per S: the seo node, dense attention with a band mask and the matmul peak, interleaved."""
    window_left = window_right = window // 2  # LocalAttention's bidirectional window
    sessions = {
        "local_node": ort_session(local_node_model(window_left, window_right, head_dim), threads),
        "dense_band": ort_session(dense_band_model(head_dim), threads),
    }
    rng = np.random.default_rng(0)
    matmuls, matmul_flops, matmul_settle = matmul_contenders(matmul_sizes, threads, rng)
    rows = []
    for seq in seqs:
        q, k, v = (rng.standard_normal((1, heads, seq, head_dim), dtype=np.float32) for _ in range(3))
        offsets = np.arange(seq)[None, :] - np.arange(seq)[:, None]
        band = (offsets >= -window_left) & (offsets <= window_right)
        contenders = {
            "local_node": lambda: sessions["local_node"].run(None, {"q": q, "k": k, "v": v}),
            "dense_band": lambda: sessions["dense_band"].run(None, {"q": q, "k": k, "v": v, "band": band}),
            **matmuls,
        }
        samples = interleaved_times(contenders, rounds=rounds, warmup=1, settle_after=matmul_settle)
        med = {name: median(times) for name, times in samples.items()}
        useful = 4 * heads * head_dim * band_pairs(seq, window_left, window_right)
        rates = {name: flops / med[name] for name, flops in matmul_flops.items()}
        peak = max(rates.values())
        rows.append({
            "seq": seq,
            "median_s": med,
            "band_flops": useful,
            "flop_per_s": {"local_node": useful / med["local_node"], "dense_band": useful / med["dense_band"], **rates},
            "peak_flop_per_s": peak,
            "fraction_of_peak": {"local_node": useful / med["local_node"] / peak,
                                 "dense_band": useful / med["dense_band"] / peak},
        })
    first, last = rows[0], rows[-1]
    return {
        "shape": {"batch": 1, "heads": heads, "head_dim": head_dim, "window_left": window_left,
                  "window_right": window_right, "band": window_left + window_right + 1,
                  "matmul_sizes": list(matmul_sizes)},
        "rounds": rounds,
        "rows": rows,
        "growth": {name: last["median_s"][name] / first["median_s"][name] for name in ("local_node", "dense_band")},
    }


# ----------------------------------------------------------------------------- 3. export time

def small_config(attention: str, positional: str):
    """The test suite's small variant (tests/export/helpers.py small_config)."""
    from seo_export.models.config import TransformerConfig

    return TransformerConfig(
        hidden_size=32, num_layers=2, num_heads=4, vocab_size=100, intermediate_size=64, dropout_rate=0.0,
        attention_dropout=0.0, attention_type=attention, positional_encoding_type=positional,
        attention_window_size=8, attention_num_landmarks=4, attention_max_relative_position=4,
        positional_encoding_max_relative_position=4, positional_encoding_max_len=128,
    )


def export_time(variants, directory: Path) -> dict:
    from seo_export.export import export_onnx
    from seo_export.models.build import build_model

    per_variant = {}
    start = time.perf_counter()
    for attention, positional in variants:
        model = build_model(small_config(attention, positional), seed=0)
        t0 = time.perf_counter()
        export_onnx(model, directory / f"small-{attention}-{positional}.onnx", precision="fp32")
        per_variant[f"{attention}/{positional}"] = time.perf_counter() - t0
    total = time.perf_counter() - start
    return {"variants": len(per_variant), "total_s": total, "per_variant_s": per_variant,
            "slowest": max(per_variant, key=per_variant.get)}


# ----------------------------------------------------------------------------- driver

def all_small_variants() -> list[tuple[str, str]]:
    from seo_export.models.config import ATTENTION_TYPES, POSITIONAL_ENCODING_TYPES

    return [(a, p) for a in ATTENTION_TYPES for p in POSITIONAL_ENCODING_TYPES]


def goals(result: dict) -> dict:
    scaling, flops, export = result["model_scaling"], result["attention_flops"], result["export_time"]
    last = flops["rows"][-1]
    out = {
        "local_growth": {"goal": f"<= {GOAL_GROWTH:g}x from S={scaling['growth']['from']} to {scaling['growth']['to']}",
                         "value": scaling["growth"]["factor"], "met": scaling["growth"]["factor"] <= GOAL_GROWTH},
        "attention_fraction_of_peak": {"goal": f">= {GOAL_FRACTION_OF_PEAK:.0%} of the matmul peak at S={last['seq']}",
                                       "value": last["fraction_of_peak"]["local_node"],
                                       "met": last["fraction_of_peak"]["local_node"] >= GOAL_FRACTION_OF_PEAK},
        "export_time": {"goal": f"< {GOAL_EXPORT_S:g} s for {export['variants']} small variants",
                        "value": export["total_s"], "met": export["total_s"] < GOAL_EXPORT_S},
    }
    if "local_vs_standard" in scaling:
        speedup = scaling["local_vs_standard"]["speedup"]
        out["local_faster_than_standard"] = {"goal": f"local faster than standard at S={scaling['standard_seq']}",
                                             "value": speedup, "met": speedup > 1.0}
    return out


def measure(seqs: list[int], standard_seq: int, rounds: int, num_layers: int = 12, hidden_size: int = 768,
            num_heads: int = 12, intermediate_size: int = 3072, window: int = 128, attn_heads: int = 2,
            head_dim: int = 64, attn_seqs: list[int] | None = None, export_variants=None,
            threads: int | None = None, matmul_sizes: tuple[int, ...] = MATMUL_SIZES, progress=print) -> dict:
    import torch

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    config = model_config(hidden_size, num_layers, num_heads, intermediate_size, window)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="seo-export-scaling-") as tmp:
        directory = Path(tmp)
        progress("export time of the small variants")
        export = export_time(export_variants or all_small_variants(), directory)
        progress(f"model scaling: local at S={seqs}, standard at S={standard_seq}")
        scaling = model_scaling(config, seqs, standard_seq, rounds, threads, directory)
        progress(f"attention FLOP/s at S={attn_seqs or seqs}")
        flops = attention_flops(attn_seqs or seqs, attn_heads, head_dim, window, rounds, threads, matmul_sizes)
    result = {
        "benchmark": "export_scaling",
        "command": shlex.join(["python", "-m", "seo_export.bench.export_scaling", *sys.argv[1:]])
        if sys.argv and sys.argv[0].endswith("export_scaling.py") else None,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": {"torch": threads, "ort_intra_op": threads},
                    "load_average_1min": {"start": load_start, "end": load_average()},
                    "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": package_version("onnxruntime")},
        "model_scaling": scaling,
        "attention_flops": flops,
        "export_time": export,
    }
    result["goals"] = goals(result)
    return result


def to_markdown(result: dict) -> str:
    scaling, flops, export = result["model_scaling"], result["attention_flops"], result["export_time"]
    cfg = scaling["config"]
    lines = ["# Export scaling (issue 3 performance)", ""]
    if result.get("command"):
        lines += [f"Command: `{result['command']}`", ""]
    m = result["machine"]
    lines += [f"Machine: {m['cpu']} x {m['cores']}, threads torch {m['threads']['torch']} / ORT intra-op "
              f"{m['threads']['ort_intra_op']}, load average {m['load_average_1min']['start']} -> "
              f"{m['load_average_1min']['end']}; torch {m['torch']}, onnxruntime {m['onnxruntime']}.", ""]
    lines += ["## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    for name, g in result["goals"].items():
        value = g["value"]
        shown = (f"{value:.1%}" if name == "attention_fraction_of_peak" else
                 f"{value:.1f} s" if name == "export_time" else f"{value:.2f}x")
        lines.append(f"| {g['goal']} | {shown} | {'yes' if g['met'] else 'NO'} |")
    lines += ["", f"## 1. Exported model on ONNX Runtime (batch 1, {scaling['rounds']} interleaved rounds, median)", "",
              f"Model: hidden {cfg['hidden_size']}, {cfg['num_layers']} layers, {cfg['num_heads']} heads, "
              f"FFN {cfg['intermediate_size']}, window {cfg['attention_window_size']}, "
              f"{cfg['positional_encoding_type']} positions.", "",
              "| S | local ms | vs S=" + str(scaling["growth"]["from"]) + " |", "|---|---|---|"]
    base = scaling["local_s"][str(scaling["growth"]["from"])]
    for seq, t in scaling["local_s"].items():
        lines.append(f"| {seq} | {t * 1e3:.1f} | {t / base:.2f}x |")
    lines += ["", f"Standard attention at S={scaling['standard_seq']}: {scaling['standard_s'] * 1e3:.1f} ms"]
    if "local_vs_standard" in scaling:
        lines[-1] += (f"; standard / local time = {scaling['local_vs_standard']['speedup']:.2f}x "
                      "(same interleaved run).")
    shape = flops["shape"]
    sizes = shape["matmul_sizes"]
    lines += ["", "## 2. Attention alone: band FLOP/s against float32 matmuls of the same run", "",
              f"q, k, v [1, {shape['heads']}, S, {shape['head_dim']}], band {shape['band']} keys "
              f"(window_left = window_right = {shape['window_left']}); useful FLOPs = 4 * H * D * band pairs.", "",
              "Peak = the fastest of ONNX Runtime's MatMul and numpy's matmul at n = "
              + ", ".join(map(str, sizes)) + " (n x n x n), measured interleaved with the attention graphs.", "",
              "| S | seo node ms | dense+band ms | matmul GFLOP/s (" + ", ".join(f"ORT/numpy {n}" for n in sizes)
              + ") | seo node GFLOP/s | seo node % of peak | dense+band % of peak |", "|---|---|---|---|---|---|---|"]
    for r in flops["rows"]:
        t, f, frac = r["median_s"], r["flop_per_s"], r["fraction_of_peak"]
        lines.append(f"| {r['seq']} | {t['local_node'] * 1e3:.1f} | {t['dense_band'] * 1e3:.1f} | "
                     + ", ".join(f"{f[f'ort_matmul_{n}'] / 1e9:.0f}/{f[f'np_matmul_{n}'] / 1e9:.0f}" for n in sizes)
                     + f" | {f['local_node'] / 1e9:.2f} | "
                     f"{frac['local_node']:.1%} | {frac['dense_band']:.2%} |")
    g = flops["growth"]
    lines += ["", f"Time growth S={flops['rows'][0]['seq']} -> {flops['rows'][-1]['seq']}: seo node "
              f"{g['local_node']:.1f}x, dense+band {g['dense_band']:.1f}x.", "",
              f"## 3. Export time of {export['variants']} small variants", "",
              f"Total {export['total_s']:.1f} s (first export's start-up included); slowest "
              f"{export['slowest']} {export['per_variant_s'][export['slowest']]:.1f} s.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from seo_export.bench.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", default="1024,2048,4096,8192", help="local model and attention lengths")
    parser.add_argument("--standard-seq", type=int, default=4096, help="length of the standard-attention comparison")
    parser.add_argument("--num-layers", type=int, default=12, help="layers of the benchmarked model (default 12)")
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--num-heads", type=int, default=12)
    parser.add_argument("--intermediate-size", type=int, default=3072)
    parser.add_argument("--attn-heads", type=int, default=2,
                        help="heads of the attention-only measurement (dense+band holds 3 x H x S^2 floats)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="scripts/results")
    args = parser.parse_args(argv)
    seqs = [int(s) for s in args.seq.split(",")]
    result = measure(seqs, args.standard_seq, args.rounds, num_layers=args.num_layers, hidden_size=args.hidden_size,
                     num_heads=args.num_heads, intermediate_size=args.intermediate_size, attn_heads=args.attn_heads,
                     threads=args.threads, progress=lambda m: print(m, file=sys.stderr, flush=True))
    write_results(args.out, "export_scaling", result, to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
