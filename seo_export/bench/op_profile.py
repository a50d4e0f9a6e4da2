"""Where one forward's time goes, by kind of op, in ONNX Runtime and in eager PyTorch.

Run: python -m seo_export.bench.op_profile [--attention local] [--positional sinusoidal]
     [--batch 4] [--seq 512] [--runs 3] [--out scripts/results]

Each runtime's own profiler over the default-size model: ONNX Runtime's session profiling
(kernel time per node) and ``torch.profiler`` (self CPU time per aten op). Both are split into
the dense linear layers (ORT: MatMul / Gemm / FusedMatMul with a weight initializer, plus the
Add of a 1-D bias to their output; torch: addmm and mm) and everything else, which is what
decides how far ORT can lead eager PyTorch. Profilers add their own overhead: read the shares, not the
absolute times, and the bench for speed.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import Counter
from pathlib import Path

from seo_export.bench.results import write_results

ORT_MATMULS = ("MatMul", "Gemm", "FusedMatMul")
TORCH_LINEARS = ("aten::addmm", "aten::mm")


def linear_nodes(model) -> dict[str, str]:
    """{node name: 'linear' | 'linear bias'} in the graph ORT runs (its optimized model): weight
    products (MatMul / Gemm / FusedMatMul with an initializer operand) and the Add of a 1-D
    initializer to a weight product's output."""
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    kinds: dict[str, str] = {}
    linear_outputs: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ORT_MATMULS and any(name in weights for name in node.input[1:]):
            kinds[node.name] = "linear"
            linear_outputs.update(node.output)
        elif (node.op_type == "Add" and any(weights.get(name) == 1 for name in node.input)
              and any(name in linear_outputs for name in node.input)):
            kinds[node.name] = "linear bias"
    return kinds


def ort_totals(events: list[dict], kinds: dict[str, str], skip_runs: int = 1) -> dict[str, float]:
    """Milliseconds per run by category from an ORT profile (its JSON list of events): the kind
    from ``kinds`` where the node has one, else its op type. The first ``skip_runs`` runs are
    left out (warm-up: allocations, weight pre-packing)."""
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) <= skip_runs:
        raise ValueError(f"the profile holds {len(runs)} runs; need more than the {skip_runs} skipped")
    since = runs[skip_runs]
    totals: Counter = Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time") and event["ts"] >= since:
            node = name[: -len("_kernel_time")]
            totals[kinds.get(node, event["args"]["op_name"])] += event["dur"]
    counted = len(runs) - skip_runs
    return {name: us / 1e3 / counted for name, us in totals.most_common()}


def torch_totals(key_averages, runs: int) -> dict[str, float]:
    """Milliseconds per run by aten op (self CPU time); the linear ops are named 'linear'."""
    totals: Counter = Counter()
    for row in key_averages:
        name = "linear" if row.key in TORCH_LINEARS else row.key
        totals[name] += row.self_cpu_time_total
    return {name: us / 1e3 / runs for name, us in totals.most_common() if us > 0}


def share(totals: dict[str, float], names: tuple[str, ...]) -> float:
    whole = sum(totals.values())
    return sum(totals.get(n, 0.0) for n in names) / whole if whole else float("nan")


def measure(attention: str, positional: str, batch: int, seq: int, runs: int, threads: int = 2,
            base_config=None) -> dict:
    """Profile the model of ``base_config`` (default: the default TransformerConfig) with this
    attention and encoding."""
    import tempfile

    import onnx
    import onnxruntime as ort
    import torch

    from seo_export.backends.ort_runner import create_session
    from seo_export.bench.sweep import bench_inputs
    from seo_export.export import export_onnx
    from seo_export.models.build import build_model
    from seo_export.models.config import TransformerConfig

    torch.set_num_threads(threads)
    config = (base_config or TransformerConfig()).replace(attention_type=attention,
                                                          positional_encoding_type=positional)
    model = build_model(config, seed=0).eval()
    feeds = bench_inputs(batch, seq, config.vocab_size)
    with tempfile.TemporaryDirectory(prefix="seo-profile-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, precision="fp32")
        optimized = Path(tmp) / "optimized.onnx"
        session = create_session(path, ["CPUExecutionProvider"], threads, optimized_path=str(optimized),
                                 profile_prefix=str(Path(tmp) / "ort"))
        ort_feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
        for _ in range(runs + 1):
            session.run(None, ort_feeds)
        kinds = linear_nodes(onnx.load(str(optimized)))
        ort_ms = ort_totals(json.loads(Path(session.end_profiling()).read_text()), kinds, skip_runs=1)
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.inference_mode():
        model(**tensors)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(**tensors)
    torch_ms = torch_totals(prof.key_averages(), runs)
    return {
        "benchmark": "op_profile",
        "variant": {"attention": attention, "positional": positional},
        "batch": batch, "seq": seq, "runs": runs,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                    "torch": torch.__version__, "onnxruntime": ort.__version__},
        "ort_ms": ort_ms,
        "torch_ms": torch_ms,
        "linear_share": {"ort": share(ort_ms, ("linear", "linear bias")), "torch": share(torch_ms, ("linear",))},
    }


def to_markdown(result: dict, top: int = 15) -> str:
    v, m = result["variant"], result["machine"]
    lines = [f"# Op profile: {v['attention']}/{v['positional']}, batch {result['batch']}, S = {result['seq']}", "",
             f"Command: `python -m seo_export.bench.op_profile --attention {v['attention']} "
             f"--positional {v['positional']} --batch {result['batch']} --seq {result['seq']} --runs {result['runs']}` "
             f"(ONNX Runtime {m['onnxruntime']} CPU, torch {m['torch']}, {m['threads']} threads, {m['cpu']})", "",
             "Profiler time per forward (profilers add overhead: compare shares; the bench is for speed).", "",
             "| | ONNX Runtime | eager PyTorch |", "|---|---|---|"]
    ort_total, torch_total = sum(result["ort_ms"].values()), sum(result["torch_ms"].values())
    ort_linear = result["ort_ms"].get("linear", 0.0) + result["ort_ms"].get("linear bias", 0.0)
    lines.append(f"| all ops, ms | {ort_total:.0f} | {torch_total:.0f} |")
    lines.append(f"| linear layers (with bias), ms | {ort_linear:.0f} | {result['torch_ms'].get('linear', 0.0):.0f} |")
    lines.append(f"| everything else, ms | {ort_total - ort_linear:.0f} "
                 f"| {torch_total - result['torch_ms'].get('linear', 0.0):.0f} |")
    lines.append(f"| linear share | {result['linear_share']['ort']:.0%} | {result['linear_share']['torch']:.0%} |")
    for title, key in (("ONNX Runtime, by op type", "ort_ms"), ("eager PyTorch, by aten op (self time)", "torch_ms")):
        lines += ["", f"## {title}", "", "| op | ms per forward |", "|---|---|"]
        lines += [f"| {name} | {ms:.1f} |" for name, ms in list(result[key].items())[:top]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from seo_export.models.config import ATTENTION_TYPES, POSITIONAL_ENCODING_TYPES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attention", choices=ATTENTION_TYPES, default="local")
    parser.add_argument("--positional", choices=POSITIONAL_ENCODING_TYPES, default="sinusoidal")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="scripts/results")
    args = parser.parse_args(argv)
    result = measure(args.attention, args.positional, args.batch, args.seq, args.runs)
    write_results(args.out, f"op_profile_{args.attention}_{args.positional}", result, to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
