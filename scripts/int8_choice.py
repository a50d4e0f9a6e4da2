"""How to quantize for INT8 on CPU, measured: per-channel or per-tensor weights, QInt8 or QUInt8,
and which MatMuls, each judged by the INT8 parity rule against eager FP32 and timed against eager
PyTorch FP32 and ONNX Runtime FP32.

    python scripts/int8_choice.py                      # standard and local, B = 4, S = 512
    python scripts/int8_choice.py --variants sparse --out scripts/results/int8_choice_sparse

The default model (``TransformerConfig()``: 768 hidden, 12 layers, 12 heads) with peaked weights
(``--init peaked``, as validate's models) and a 3-label classification head so that ``logits``
exist. Inputs: ``parity.cases.padded_batch`` (row 0 full, the others right-padded to random
lengths). Contenders per variant:

- ``int8-{pc,pt}-{s8,u8}``: ``export.quantize.quantize_model`` with per-channel (pc) or per-tensor
  (pt) weights, QInt8 (s8) or QUInt8 (u8); the linear layers only;
- ``int8-actact`` (standard only): ONNX Runtime's default for MatMul, ``MatMulConstBOnly`` off, so
  the activation x activation MatMuls of attention (Q.K^T, P.V) are quantized too;
- ``int8-qk-fp32`` (local, sparse): the attention's q/k projections kept in FP32 (they feed the
  attention logits; for landmark attention the Nystrom pseudo-inverse).

Every contender is timed in the same interleaved rounds as eager PyTorch FP32 and ONNX Runtime FP32
(``utils.timing.interleaved_times``), several rounds; medians, a 95% bootstrap interval of each
median and of the speedup over eager (``utils.timing.speedup_interval``). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from seo_export.backends.ort_runner import create_session
from seo_export.export.exporter import build_onnx
from seo_export.export.quantize import QuantizationSettings, quantize_model
from seo_export.models import TransformerConfig
from seo_export.models.build import build_model
from seo_export.parity.cases import padded_batch
from seo_export.parity.eager import EagerModel
from seo_export.parity.quantized import Int8Thresholds, check_int8, int8_figures
from seo_export.parity.tolerance import combine
from seo_export.utils.files import atomic_write_text
from seo_export.utils.timing import interleaved_times, speedup_interval

SETTINGS = {
    "int8-pc-s8": QuantizationSettings(per_channel=True, weight_type="QInt8"),
    "int8-pt-s8": QuantizationSettings(per_channel=False, weight_type="QInt8"),
    "int8-pc-u8": QuantizationSettings(per_channel=True, weight_type="QUInt8"),
    "int8-pt-u8": QuantizationSettings(per_channel=False, weight_type="QUInt8"),
}
OUTPUTS = ("last_hidden_state", "pooler_output", "logits")


def median_interval(samples: list[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the median of ``samples``."""
    rng = np.random.default_rng(seed)
    data = np.asarray(samples)
    medians = np.median(data[rng.integers(0, len(data), (resamples, len(data)))], axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def linear_node_modules(model, proto: onnx.ModelProto) -> dict[str, str]:
    """Graph MatMul/Gemm node name -> the nn.Linear whose weight it multiplies (by value)."""
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if len(t.dims) == 2}
    linears = {name: m.weight.detach().numpy() for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = {}
    for node in proto.graph.node:
        w = weights.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else None
        if w is None:
            continue
        for name, weight in linears.items():
            if (w.shape == weight.T.shape and np.array_equal(w, weight.T)) or (
                    node.op_type == "Gemm" and w.shape == weight.shape and np.array_equal(w, weight)):
                found[node.name] = name
    return found


def act_act_int8(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's quantize_dynamic with MatMulConstBOnly off: every float MatMul, Q.K^T included."""
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(fp32, Path(tmp) / "q.onnx", op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                         weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": False})
        return onnx.load(str(Path(tmp) / "q.onnx"))


def logits_rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float((np.linalg.norm(actual - expected, axis=-1) / np.linalg.norm(expected, axis=-1)).max())


def measure_variant(attention: str, args, log) -> dict:
    config = TransformerConfig(dropout_rate=0.0, attention_dropout=0.0, attention_type=attention, num_labels=3,
                               num_layers=args.layers)
    model = build_model(config, seed=0, init="peaked")
    feeds = padded_batch(args.batch, args.seq, config.vocab_size, seed=0)
    real = feeds["attention_mask"].astype(bool)
    log(f"{attention}: eager FP32 reference")
    expected = EagerModel(model, torch.float32)(feeds)
    expected = {k: expected[k] for k in OUTPUTS}
    t0 = time.perf_counter()
    fp32 = build_onnx(model)
    export_s = time.perf_counter() - t0
    log(f"{attention}: FP32 export {export_s:.0f} s")

    graphs: dict[str, onnx.ModelProto] = {}
    quantize_s: dict[str, float] = {}
    for name, settings in SETTINGS.items():
        t0 = time.perf_counter()
        graphs[name] = quantize_model(fp32, settings)
        quantize_s[name] = time.perf_counter() - t0
        log(f"{attention}: {name} quantized in {quantize_s[name]:.0f} s")
    if attention == "standard":
        t0 = time.perf_counter()
        graphs["int8-actact"] = act_act_int8(fp32)
        quantize_s["int8-actact"] = time.perf_counter() - t0
    else:
        modules = linear_node_modules(model, fp32)
        qk = tuple(n for n, m in modules.items() if m.endswith(("attention.q_proj", "attention.k_proj")))
        t0 = time.perf_counter()
        graphs["int8-qk-fp32"] = quantize_model(fp32, SETTINGS["int8-pc-s8"], exclude_nodes=qk)
        quantize_s["int8-qk-fp32"] = time.perf_counter() - t0

    sessions = {"ort-fp32": create_session(fp32)} if args.with_fp32 else {}
    sessions.update({name: create_session(g) for name, g in graphs.items()})
    names = {name: [o.name for o in s.get_outputs()] for name, s in sessions.items()}
    errors = {}
    for name, session in sessions.items():
        out = dict(zip(names[name], session.run(None, feeds)))
        verdicts = {k: check_int8(k, out[k], expected[k], real) for k in OUTPUTS}
        verdict = combine(verdicts)
        errors[name] = {**int8_figures(out, expected, real), "logits_rel": logits_rel(out["logits"], expected["logits"]),
                        "max_abs_hidden": float(np.abs(out["last_hidden_state"] - expected["last_hidden_state"])[real].max()),
                        "rule_passed": verdict.passed, "rule": {k: v.reason for k, v in verdicts.items()}}
        log(f"{attention}: {name} min cos {errors[name]['min_token_cosine']:.6f} "
            f"pooled {errors[name]['max_pooled_rel']:.4f} top1 {errors[name]['top1_agreement']}")

    ids, mask = torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])

    def eager():
        with torch.inference_mode():
            model(ids, mask)

    contenders = {"torch": eager}
    contenders.update({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()})
    log(f"{attention}: timing {len(contenders)} contenders, {args.rounds} interleaved rounds")
    times = interleaved_times(contenders, rounds=args.rounds, warmup=1)
    timing = {}
    for name, samples in times.items():
        entry = {"median_s": statistics.median(samples), "median_ci95": median_interval(samples), "samples_s": samples}
        if name != "torch":
            entry["speedup_vs_torch"] = statistics.median(times["torch"]) / statistics.median(samples)
            entry["speedup_vs_torch_ci95"] = speedup_interval(times["torch"], samples)
            if "ort-fp32" in times:
                entry["speedup_vs_ort_fp32"] = statistics.median(times["ort-fp32"]) / statistics.median(samples)
                entry["speedup_vs_ort_fp32_ci95"] = speedup_interval(times["ort-fp32"], samples)
        timing[name] = entry
    sizes = {name: g.ByteSize() / 2**20 for name, g in graphs.items()}
    sizes["fp32"] = fp32.ByteSize() / 2**20
    return {"attention": attention, "export_s": export_s, "quantize_s": quantize_s, "size_mib": sizes,
            "errors": errors, "timing": timing}


def fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a"


def markdown(report: dict) -> str:
    t = report["thresholds"]
    lines = [
        "# INT8 choice: how to quantize, measured",
        "",
        f"`{report['command']}`",
        "",
        f"Default model (768 hidden, {report['layers']} layers), peaked weights, 3-label head; B = {report['batch']}, "
        f"S = {report['seq']} (padded rows); {report['rounds']} interleaved rounds after one warm-up; "
        f"ONNX Runtime {report['environment']['onnxruntime']}, torch {report['environment']['torch']}, "
        f"{report['environment']['cpus']} CPUs; load average before/after: {report['load_before']} / "
        f"{report['load_after']}. Rule defaults: min token cosine {t['min_cosine']}, pooled rel "
        f"{t['max_pooled_rel']}, top-1 {t['min_top1']} (ties {t['top1_tie']}).",
        "",
    ]
    for v in report["variants"]:
        lines += [f"## {v['attention']}", "",
                  "| contender | min token cos | mean token cos | pooled rel | logits rel | top-1 | max abs | rule | "
                  "median s [95% CI] | vs torch [95% CI] | vs ORT FP32 | quantize s | MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        torch_t = v["timing"]["torch"]
        lines.append(f"| torch (eager FP32) | | | | | | | | {torch_t['median_s']:.3f} {fmt_ci(torch_t['median_ci95'])} "
                     f"| 1.00 | | | |")
        for name, e in v["errors"].items():
            tm = v["timing"][name]
            vs_fp32 = f"{tm['speedup_vs_ort_fp32']:.2f}" if "speedup_vs_ort_fp32" in tm else "n/a"
            lines.append(
                f"| {name} | {e['min_token_cosine']:.6f} | {e['mean_token_cosine']:.6f} | {e['max_pooled_rel']:.4f} | "
                f"{e['logits_rel']:.4f} | {e['top1_agreement']} | {e['max_abs_hidden']:.3f} | "
                f"{'pass' if e['rule_passed'] else 'FAIL'} | {tm['median_s']:.3f} {fmt_ci(tm['median_ci95'])} | "
                f"{tm['speedup_vs_torch']:.2f} {fmt_ci(tm['speedup_vs_torch_ci95'])} | {vs_fp32} | "
                f"{v['quantize_s'].get(name, 0):.0f} | {v['size_mib'].get(name, 0):.0f} |")
        lines.append("")
    lines += ["## Choice", "", report["choice"], ""]
    return "\n".join(lines)


def choose(variants: list[dict]) -> str:
    """Of the four settings passing the rule everywhere, those within 10% of the fastest (mean median
    speedup over eager across variants; about the width of the speedups' intervals here), the most
    accurate (worst min token cosine); and what the other contenders showed."""
    names = list(SETTINGS)
    passing = [n for n in names if all(v["errors"][n]["rule_passed"] for v in variants)]
    pool = passing or names
    score = {n: statistics.mean(v["timing"][n]["speedup_vs_torch"] for v in variants) for n in names}
    cos = {n: min(v["errors"][n]["min_token_cosine"] for v in variants) for n in names}
    pooled = {n: max(v["errors"][n]["max_pooled_rel"] for v in variants) for n in names}
    fastest = max(score[n] for n in pool)
    best = max((n for n in pool if score[n] >= 0.9 * fastest), key=cos.get)
    text = (f"Passing the rule in every variant: {', '.join(passing) or 'none'}. Mean speedup over eager FP32 "
            f"(worst min token cosine, worst pooled rel): "
            + ", ".join(f"{n} {score[n]:.2f}x ({cos[n]:.6f}, {pooled[n]:.4f})"
                        for n in sorted(names, key=score.get, reverse=True))
            + f". Chosen: {best}, the most accurate of those passing within 10% of the fastest.")
    for v in variants:
        for extra in ("int8-actact", "int8-qk-fp32"):
            if extra in v["errors"]:
                e, t = v["errors"][extra], v["timing"][extra]
                ref = v["timing"][best]
                text += (f" {v['attention']} {extra}: min cosine {e['min_token_cosine']:.6f}, pooled "
                         f"{e['max_pooled_rel']:.4f}, rule {'pass' if e['rule_passed'] else 'FAIL'}, "
                         f"{t['speedup_vs_torch']:.2f}x against {ref['speedup_vs_torch']:.2f}x for {best}.")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="standard,local")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=TransformerConfig().num_layers, help="a smoke test: fewer layers")
    parser.add_argument("--with-fp32", action="store_true",
                        help="also time ONNX Runtime FP32 (as slow as eager: about 0.9x, README)")
    parser.add_argument("--out", default="scripts/results/int8_choice", help="OUT.json and OUT.md")
    parser.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    parser.add_argument("--merge", metavar="OTHER.json", action="append", default=[],
                        help="with --render: choose over OTHER.json's variants too (a separate run's)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    if args.render:
        report = json.loads(out.with_suffix(".json").read_text())
        merged = [v for other in args.merge for v in json.loads(Path(other).read_text())["variants"]]
        report["choice"] = choose(report["variants"] + merged)
        if merged:
            report["choice"] = (f"Over {', '.join(v['attention'] for v in report['variants'] + merged)} "
                                f"(with {', '.join(args.merge)}): " + report["choice"])
        atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
        atomic_write_text(out.with_suffix(".md"), markdown(report))
        return 0

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)

    import onnxruntime

    load_before = [round(x, 2) for x in os.getloadavg()]
    variants = [measure_variant(a, args, log) for a in args.variants.split(",")]
    report = {
        "command": " ".join(["python scripts/int8_choice.py", *(argv if argv is not None else sys.argv[1:])]),
        "batch": args.batch, "seq": args.seq, "rounds": args.rounds, "layers": args.layers,
        "environment": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "cpus": os.cpu_count(),
                        "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "thresholds": Int8Thresholds().__dict__, "variants": variants, "choice": choose(variants),
        "wall_s": time.perf_counter() - start,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    log(f"wrote {out.with_suffix('.json')} and .md")
    print(report["choice"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
