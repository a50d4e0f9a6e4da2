"""Reference ops against dense masked attention: time and peak memory as S grows.

Run: python -m seo_export.bench.ops_scaling [--seq 1024,4096,16384] [--out scripts/results]
Times are medians of interleaved rounds (ratios within one run are what to read); peak memory
is the RSS growth of one call in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from seo_export import ops
from seo_export.bench.memory import peak_memory_mb
from seo_export.utils.timing import interleaved_times, median
from seo_export.bench.results import write_results

HEADS, HEAD_DIM, WINDOW, LANDMARKS = 2, 64, 128, 64


def _inputs(seq: int):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, HEADS, seq, HEAD_DIM, generator=g) for _ in range(3)]


def dense_band(seq: int):
    """What users write without the op: a full S x S logit matrix with a band mask."""
    q, k, v = _inputs(seq)
    i = torch.arange(seq)
    band = (i[None, :] - i[:, None]).abs() <= WINDOW // 2

    def run():
        logits = (q @ k.transpose(-1, -2)) * HEAD_DIM ** -0.5
        return torch.softmax(logits.masked_fill(~band, float("-inf")), -1) @ v

    return run


def dense_full(seq: int):
    q, k, v = _inputs(seq)
    return lambda: torch.softmax((q @ k.transpose(-1, -2)) * HEAD_DIM ** -0.5, -1) @ v


def local_op(seq: int):
    q, k, v = _inputs(seq)
    return lambda: ops.local_window_attention(q, k, v, window_left=WINDOW // 2, window_right=WINDOW // 2)


def landmark_op(seq: int):
    q, k, v = _inputs(seq)
    return lambda: ops.landmark_attention(q, k, v, num_landmarks=LANDMARKS)


CONTENDERS = {"dense_band": dense_band, "local_op": local_op, "dense_full": dense_full, "landmark_op": landmark_op}


def measure(seqs: list[int], rounds: int) -> dict:
    rows = []
    for seq in seqs:
        with torch.inference_mode():
            times = interleaved_times({name: make(seq) for name, make in CONTENDERS.items()}, rounds=rounds)
        row = {"seq": seq, "median_s": {n: median(t) for n, t in times.items()}, "peak_mb": {}}
        for name in CONTENDERS:
            row["peak_mb"][name] = peak_memory_mb("seo_export.bench.ops_scaling", name, {"seq": seq})
        rows.append(row)
        print(json.dumps(row))
    return {
        "benchmark": "ops_scaling",
        "shape": {"batch": 1, "heads": HEADS, "head_dim": HEAD_DIM, "window": WINDOW, "landmarks": LANDMARKS},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    lines = [
        "| S | local op / dense band (time) | landmark op / dense full (time) | peak MB: dense band | local op | dense full | landmark op |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        t, m = r["median_s"], r["peak_mb"]

        def mb(name):
            return "n/a" if m[name] is None else f"{m[name]:.0f}"

        lines.append(
            f"| {r['seq']} | {t['local_op'] / t['dense_band']:.3f} | {t['landmark_op'] / t['dense_full']:.3f} | "
            f"{mb('dense_band')} | {mb('local_op')} | {mb('dense_full')} | {mb('landmark_op')} |"
        )
    first, last = result["rows"][0], result["rows"][-1]
    growth = {n: last["median_s"][n] / first["median_s"][n] for n in CONTENDERS}
    lines.insert(0, "Command: `python -m seo_export.bench.ops_scaling` (batch 1, 2 heads, head dim 64, window 128, "
                    "64 landmarks; torch CPU, 2 threads)\n")
    lines.append("")
    lines.append(f"Time growth S={first['seq']} -> {last['seq']}: "
                 + ", ".join(f"{n} {g:.1f}x" for n, g in growth.items()))
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seq", default="1024,4096,16384")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="scripts/results")
    args = parser.parse_args(argv)
    result = measure([int(s) for s in args.seq.split(",")], args.rounds)
    write_results(args.out, "ops_scaling", result, to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
