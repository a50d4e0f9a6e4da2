"""Each Hugging Face family at base size, converted and exported: how exact, how close, how fast.

``python -m seo_export.bench.hf_families [--out scripts/results]`` builds a random base-size
checkpoint of each family with transformers (no download; q/k redrawn so attention is peaked),
converts it, exports FP32 and FP16 graphs, and records on a right-padded batch (B=4, S=512):
the conversion's error against transformers in float64 and float32, ONNX Runtime FP32 and FP16
errors against transformers, and transformers, eager zoo and ONNX Runtime FP32 timed interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from seo_export.bench.results import write_results
from seo_export.utils.timing import interleaved_times, median, ratio_median, speedup_interval

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            vocab_size=30522)
FAMILIES = {  # model_type -> (config class, model class, settings beyond BASE): published base settings
    "bert": ("BertConfig", "BertModel", {"max_position_embeddings": 512}),
    "roformer": ("RoFormerConfig", "RoFormerModel", {"max_position_embeddings": 1536}),
    "longformer": ("LongformerConfig", "LongformerModel",
                   {"attention_window": 256, "max_position_embeddings": 1026, "pad_token_id": 1}),
    "nystromformer": ("NystromformerConfig", "NystromformerModel",
                      {"max_position_embeddings": 512, "num_landmarks": 64, "segment_means_seq_len": 64,
                       "conv_kernel_size": 65}),
}
EXACT_FP64 = 1e-6  # float64 agreement below float32 rounding: the conversion is exact


@torch.no_grad()
def sharpen(model, hidden: int) -> None:
    """q/k at std 2/sqrt(hidden), as the zoo's peaked init: attention far from uniform."""
    for name, p in model.named_parameters():
        if name.endswith(("query.weight", "key.weight")):
            p.normal_(std=2 * hidden ** -0.5)


def hf_model(family: str):
    import transformers

    config_class, model_class, extra = FAMILIES[family]
    config = getattr(transformers, config_class)(**BASE, **extra, attn_implementation="eager")
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).eval()
    sharpen(model, BASE["hidden_size"])
    return model


def padded_batch(batch: int, seq: int, pad: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, BASE["vocab_size"], size=(batch, seq), dtype=np.int64)
    mask = np.ones_like(ids)
    for row, length in enumerate(np.linspace(seq, seq // 4, batch).astype(int)):
        mask[row, length:] = 0
    ids[mask == 0] = pad
    return {"input_ids": ids, "attention_mask": mask}


def max_error(got: np.ndarray, want: np.ndarray, valid: np.ndarray) -> float:
    return float(np.abs(got[valid].astype(np.float64) - want[valid].astype(np.float64)).max())


@contextlib.contextmanager
def float64_ops():
    """The seo ops take float32/16; their references (the ops' definitions) run float64."""
    from seo_export import ops

    saved = ops.local_window_attention, ops.landmark_attention
    ops.local_window_attention, ops.landmark_attention = ops.local_window_attention_reference, \
        ops.landmark_attention_reference
    try:
        yield
    finally:
        ops.local_window_attention, ops.landmark_attention = saved


def measure(family: str, workdir: Path, batch: int, seq: int, rounds: int) -> dict:
    from seo_export.backends.ort_runner import create_session
    from seo_export.convert import convert_hf
    from seo_export.export import export_onnx

    hf = hf_model(family)
    hf.save_pretrained(workdir / family)
    conversion = convert_hf(workdir / family)
    zoo = conversion.model()
    feeds = padded_batch(batch, seq, hf.config.pad_token_id)
    valid = feeds["attention_mask"].astype(bool)
    ids, mask = (torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask"))

    def run_hf(model):
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=mask).last_hidden_state.double().numpy()

    def run_zoo(model):
        with torch.inference_mode():
            return model(ids, mask)["last_hidden_state"].double().numpy()

    with float64_ops():
        fp64 = max_error(run_zoo(zoo.double()), run_hf(hf.double()), valid)
    zoo.float(), hf.float()
    reference = run_hf(hf)
    row = {"family": family, "zoo_attention": conversion.config.attention_type,
           "convert_error_fp64": fp64, "convert_exact": fp64 < EXACT_FP64,
           "convert_error_fp32": max_error(run_zoo(zoo), reference, valid)}
    sessions = {}
    for precision in ("fp32", "fp16"):
        path = export_onnx(zoo, workdir / f"{family}-{precision}.onnx", precision=precision).path
        sessions[precision] = create_session(path, providers=["CPUExecutionProvider"])
        (out,) = sessions[precision].run(["last_hidden_state"], feeds)
        row[f"ort_{precision}_error"] = max_error(out, reference, valid)
    with torch.inference_mode():
        half = zoo.half()(ids, mask)["last_hidden_state"].double().numpy()  # eager FP16's own error, for scale
    row["eager_fp16_error"] = max_error(half, reference, valid)
    zoo.float()
    times = interleaved_times({
        "transformers": lambda: run_hf(hf), "zoo": lambda: run_zoo(zoo),
        "ort_fp32": lambda: sessions["fp32"].run(["last_hidden_state"], feeds)}, rounds=rounds, warmup=1)
    row["median_s"] = {name: median(samples) for name, samples in times.items()}
    row["ort_vs_zoo"] = ratio_median(times["zoo"], times["ort_fp32"])
    row["ort_vs_zoo_ci95"] = speedup_interval(times["zoo"], times["ort_fp32"])
    row["zoo_vs_transformers"] = ratio_median(times["transformers"], times["zoo"])
    row["zoo_vs_transformers_ci95"] = speedup_interval(times["transformers"], times["zoo"])
    return row


def interval(value: float, ci) -> str:
    return f"{value:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def markdown(result: dict) -> str:
    lines = [
        "# Hugging Face families: conversion, export and speed", "",
        f"`{result['command']}`, B={result['batch']}, S={result['seq']} (right-padded rows of "
        f"{result['seq']}..{result['seq'] // 4} tokens), base size (768 hidden, 12 layers), random weights "
        f"with peaked q/k, {result['rounds']} interleaved rounds; errors are max abs on valid tokens of "
        "last_hidden_state against transformers. Speed: median of per-round ratios with 95% bootstrap "
        "interval; > 1 means the first named is faster. Convert exact: float64 error below 1e-6; RoFormer and "
        "Longformer stop at float32 rounding in one step each (the zoo's rotary angles, transformers' Longformer "
        "softmax).", "",
        "| family | zoo attention | convert exact (fp64 err) | convert fp32 err | ORT FP32 err | ORT FP16 err "
        "| eager FP16 err | ORT FP32 vs eager zoo | eager zoo vs transformers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["families"]:
        lines.append(
            f"| {r['family']} | {r['zoo_attention']} | {'yes' if r['convert_exact'] else 'NO'} "
            f"({r['convert_error_fp64']:.1e}) | {r['convert_error_fp32']:.1e} | {r['ort_fp32_error']:.1e} "
            f"| {r['ort_fp16_error']:.1e} | {r['eager_fp16_error']:.1e} "
            f"| {interval(r['ort_vs_zoo'], r['ort_vs_zoo_ci95'])} "
            f"| {interval(r['zoo_vs_transformers'], r['zoo_vs_transformers_ci95'])} |")
    lines += ["", f"Machine: {result['machine']}; torch {result['torch']}, onnxruntime {result['onnxruntime']}, "
              f"transformers {result['transformers']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    import onnxruntime
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="scripts/results")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="seo-export-hf-") as tmp:
        for family in args.families.split(","):
            print(f"{family} ...", flush=True)
            rows.append(measure(family, Path(tmp), args.batch, args.seq, args.rounds))
            print(f"  {rows[-1]}", flush=True)
    result = {"command": "python -m seo_export.bench.hf_families", "batch": args.batch, "seq": args.seq,
              "rounds": args.rounds, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
              "transformers": transformers.__version__, "families": rows}
    write_results(args.out, "hf_families", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
