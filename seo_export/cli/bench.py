"""``seo-export bench``: latency, throughput, speedup and peak memory per variant, backend, batch and length."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from seo_export.cli.text_inputs import add_text_arguments, text_inputs
from seo_export.errors import UsageError

DEFAULT_BACKENDS = "torch,ort,trt"
MODEL_OVERRIDES = ("hidden_size", "num_layers", "num_heads", "intermediate_size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    select = parser.add_argument_group(
        "variants", "default: the config's variant (--config, else the built-in defaults: standard/sinusoidal)")
    select.add_argument("--all", action="store_true",
                        help="every attention x positional-encoding variant (16, non-causal)")
    select.add_argument("--config", help="TransformerConfig JSON file: the model every variant is built from")
    select.add_argument("--attention", metavar="KIND[,KIND]",
                        help="attention kind(s), comma-separated: standard, local, sparse, relative")
    select.add_argument("--positional", metavar="KIND[,KIND]",
                        help="positional encoding(s), comma-separated: sinusoidal, learned, relative, rotary")
    select.add_argument("--causal", action="store_true", help="causal masking (not defined for sparse)")
    model = parser.add_argument_group("model size (override the config, e.g. for a quick small run)")
    for name in MODEL_OVERRIDES:
        model.add_argument(f"--{name.replace('_', '-')}", metavar="N")
    model.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    run_group = parser.add_argument_group("measurement")
    run_group.add_argument("--backends", default=DEFAULT_BACKENDS,
                           help=f"comma-separated, from torch (eager), torch-triton (eager with the seo ops on the "
                                f"Triton kernels; FP16 on a GPU), ort, ort-int8 (ONNX Runtime on the INT8 export), "
                                f"trt (default {DEFAULT_BACKENDS}; trt and torch-triton are skipped with the reason "
                                "where TensorRT, Triton or a GPU is missing; TRITON_INTERPRET=1 runs torch-triton on "
                                "the CPU, slowly)")
    run_group.add_argument("--batch", metavar="B[,B]", help="batch sizes (default 1; with --text: the texts)")
    run_group.add_argument("--seq", metavar="S[,S]",
                           help="sequence lengths (default 512; with --text: the texts' padded length)")
    run_group.add_argument("--warmup", default="2", metavar="N", help="untimed calls per backend first (default 2)")
    run_group.add_argument("--iterations", default="10", metavar="N",
                           help="timed calls per backend, interleaved (default 10; with 5 or more each speedup "
                                "gets a 95%% interval)")
    run_group.add_argument("--threads", metavar="N",
                           help="intra-op threads for torch and ONNX Runtime alike (default: torch's setting)")
    run_group.add_argument("--no-memory", action="store_true",
                           help="skip the peak-memory probe (one extra process per backend and point)")
    parser.add_argument("--report-dir", metavar="DIR", help="write report.json, report.md and report.html here")
    add_text_arguments(parser, note="Bench then times one point, batch = the texts and seq = their padded length, "
                                    "on these very ids; the peak-memory probe runs seeded ids of the same shape "
                                    "(these models' cost depends on the shape only)")


def int_list(text: str, flag: str) -> list[int]:
    values = []
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise UsageError(f"{flag} takes comma-separated positive integers, got {text!r}") from None
        if value <= 0:
            raise UsageError(f"{flag} takes comma-separated positive integers, got {text!r}")
        values.append(value)
    return list(dict.fromkeys(values))


def one_int(text: str | None, flag: str, minimum: int = 1) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{flag} takes an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{flag} takes an integer >= {minimum}, got {value}")
    return value


def name_list(text: str | None) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()] if text else []


def check_report_dir(path: str) -> None:
    """Fail before a long sweep, not after it, when the report cannot be written."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"cannot write report to {path!r}: it exists and is not a directory")
    parent = directory
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write report to {path!r}: {parent} is not a writable directory")


def selection(args: argparse.Namespace):
    """(base config, variants) from --all / --config / --attention --positional --causal and the size flags."""
    from seo_export.bench.sweep import Variant, all_variants, parse_variants
    from seo_export.models.config import TransformerConfig

    base = TransformerConfig.from_json(args.config) if args.config else TransformerConfig()
    overrides = {name: one_int(getattr(args, name), f"--{name.replace('_', '-')}") for name in MODEL_OVERRIDES}
    base = base.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.all:
        if args.attention or args.positional or args.causal:
            raise UsageError("--all benches every attention x positional variant (non-causal); "
                             "drop --attention/--positional/--causal, or drop --all")
        return base, all_variants()
    attention = name_list(args.attention) or [base.attention_type]
    positional = name_list(args.positional) or [base.positional_encoding_type]
    variants: list[Variant] = parse_variants(attention, positional, bool(args.causal or base.use_causal_mask))
    return base, variants


def allocator_line(allocator: dict | None) -> str:
    if not allocator:
        return "not recorded"
    settings = ", ".join(f"{k}={v}" for k, v in allocator.get("env", {}).items()) or "defaults (no allocator variables set)"
    return f"{allocator.get('libc') or 'unknown C library'}, {settings}"


def settings_markdown(report: dict, command: str) -> str:
    """What report.md needs besides the table to be read on its own: model, settings, skips, command."""
    env = report["environment"]
    bench = env.get("bench", {})
    model = bench.get("model", {})
    lines = ["", "## Settings", "",
             f"- model: hidden {model.get('hidden_size')}, {model.get('num_layers')} layers, "
             f"{model.get('num_heads')} heads, FFN {model.get('intermediate_size')}, "
             f"window {model.get('attention_window_size')}, landmarks {model.get('attention_num_landmarks')}",
             f"- timing: {bench.get('warmup')} warm-up + {bench.get('iterations')} timed calls per backend, "
             f"{bench.get('timing')}",
             f"- threads: {', '.join(f'{k} {v}' for k, v in env.get('threads', {}).items())}; "
             f"CPU {env['cpu']['model']} x {env['cpu']['count']}; torch device {bench.get('torch_device')}",
             f"- eager FP16 baseline (torch-fp16): {bench.get('eager_fp16', 'not recorded')}",
             f"- allocator: {allocator_line(env.get('allocator'))}",
             f"- load average (1 min) at start / end: {bench.get('load_average_1min', {}).get('start')} / "
             f"{bench.get('load_average_1min', {}).get('end')}",
             f"- peak MB: {bench.get('peak_mb')}",
             f"- inputs: {bench.get('inputs', 'seeded random ids')}"]
    for skip in env.get("skipped", []):
        where = skip.get("backend") or f"{skip['variant']} b{skip['batch']} s{skip['seq']}"
        lines.append(f"- skipped {where}: {skip['reason']}")
    lines += [f"- command: `{command}`", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from seo_export.bench.sweep import SweepSettings, check_settings, run_sweep, usable_backends, variant_config
    from seo_export.cli.common import progress_lines
    from seo_export.parity.report import summary_table, write_report_dir
    from seo_export.parity.report.json_report import write_errors
    from seo_export.utils.files import atomic_write_text

    base, variants = selection(args)
    backends = name_list(args.backends)
    texts = text_inputs(args, {"--batch": args.batch, "--seq": args.seq}, args.max_length)
    feeds = None
    if texts is not None:  # one point: the texts' padded batch, within every variant's limit
        feeds = texts.feeds([variant_config(base, variant) for variant in variants])
        args.batch, args.seq = (str(n) for n in feeds["input_ids"].shape)
    settings = SweepSettings(
        variants=variants, base_config=base, backends=backends,
        batches=int_list(args.batch or "1", "--batch"), seqs=int_list(args.seq or "512", "--seq"), feeds=feeds,
        warmup=one_int(args.warmup, "--warmup", minimum=0), iterations=one_int(args.iterations, "--iterations"),
        seed=args.seed, threads=one_int(args.threads, "--threads"), memory=not args.no_memory,
    )
    check_settings(settings)
    usable_backends(settings.backends)  # only trt asked where it is missing: the error, before any work
    if args.report_dir:
        check_report_dir(args.report_dir)
    command = shlex.join(["seo-export", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else "seo-export bench"

    with progress_lines() as progress:  # plain lines where stderr is a log, not a terminal
        outcome = run_sweep(settings, progress=progress)
    err = Console(stderr=True, soft_wrap=True)  # a skip reason stays one line in a log
    report = outcome.report
    report["environment"]["bench"]["command"] = command
    for skip in outcome.skipped:
        where = skip.get("backend") or f"{skip['variant']} batch {skip['batch']} seq {skip['seq']}"
        err.print(f"skipped {where}: {skip['reason']}", markup=False, highlight=False)

    out = Console() if Console().is_terminal else Console(width=200)  # piped: no 80-column cut
    out.print(summary_table(report))
    if args.report_dir:
        paths = write_report_dir(report, args.report_dir)
        md = paths["report.md"]
        with write_errors(md):
            atomic_write_text(md, md.read_text() + settings_markdown(report, command))
        out.print(f"wrote {', '.join(str(p) for p in paths.values())}", markup=False, highlight=False)
    return 0
