"""``seo-export validate``: parity of exported variants against eager PyTorch, and where it breaks."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seo_export.cli.common import output_console, positive_int, progress_lines, require
from seo_export.cli.text_inputs import add_text_arguments, text_inputs
from seo_export.models import ATTENTION_TYPES, POSITIONAL_ENCODING_TYPES
from seo_export.parity.quantized import MAX_POOLED_REL, MIN_TOKEN_COSINE, MIN_TOP1, Int8Thresholds

BACKEND_NAMES = ("ort-fp32", "ort-fp16", "ort-int8", "trt-fp16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_argument_group("what to validate (default: every variant of the sweep model)")
    which.add_argument("--all", action="store_true", help="every attention x encoding variant, plus causal ones")
    which.add_argument("--config", help="TransformerConfig JSON: validate this model (with --all: its sizes, "
                                        "every variant)")
    which.add_argument("--attention", choices=ATTENTION_TYPES)
    which.add_argument("--positional", choices=POSITIONAL_ENCODING_TYPES)
    which.add_argument("--causal", action="store_true")
    which.add_argument("--checkpoint", help="weights (.safetensors, or torch weights_only)")
    which.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    which.add_argument("--init", choices=("peaked", "default"), default="peaked",
                       help="seeded weights: peaked (default) makes attention far from uniform and as large as its "
                            "input, so miswired attention shows; default is BERT's 0.02 init (near-uniform attention)")
    which.add_argument("--model", help="validate this exported .onnx instead of exporting")
    which.add_argument("--hf", metavar="HF_DIR",
                       help="a Hugging Face checkpoint directory (BERT, RoFormer, Longformer): convert it in memory, "
                            "validate the converted model's export as for --config/--checkpoint, and check the "
                            "conversion too: eager zoo PyTorch against the transformers model itself (backend "
                            "'transformers', FP32 rule, valid tokens; needs the hf extra). Input lengths stay within "
                            "its positions; padded positions hold its pad_token_id")
    parser.add_argument("--backends",
                        help=f"comma-separated from {', '.join(BACKEND_NAMES)} (default: all; with --model, those "
                             "that run the file's precision; trt-fp16 is skipped, with the reason, where TensorRT "
                             "or a GPU is missing)")
    parser.add_argument("--inputs", help=".npz with input_ids [B, S] (and attention_mask) instead of the edge cases")
    parser.add_argument("--batch", type=positive_int, help="rows per input case (default 3)")
    parser.add_argument("--max-len", type=positive_int,
                        help="longest input length (default 256); with --text, the most tokens a text may have "
                             "(default: the model's and the tokenizer's limit)")
    parser.add_argument("--atol", type=float, default=1e-4, help="FP32 absolute tolerance (default 1e-4)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="FP32 relative tolerance (default 1e-4)")
    parser.add_argument("--fp16-factor", type=float, default=2.0,
                        help="FP16 passes within this multiple of eager FP16's own error (default 2)")
    parser.add_argument("--fp16-floor", type=float, default=1e-3, help="plus this floor (default 1e-3)")
    int8 = parser.add_argument_group("INT8 rule (ort-int8; against eager FP32)")
    int8.add_argument("--int8-min-cosine", type=float, default=MIN_TOKEN_COSINE,
                      help=f"smallest per-token cosine similarity on real tokens (default {MIN_TOKEN_COSINE})")
    int8.add_argument("--int8-max-pooled-rel", type=float, default=MAX_POOLED_REL,
                      help=f"largest relative error of pooler_output per sample (default {MAX_POOLED_REL})")
    int8.add_argument("--int8-min-top1", type=float, default=MIN_TOP1,
                      help=f"smallest top-1 agreement of logits, near-ties excepted (default {MIN_TOP1})")
    parser.add_argument("--no-locate", action="store_true", help="do not search for the layer where parity breaks")
    parser.add_argument("--report-dir", help="write report.json, report.md and report.html here")
    add_text_arguments(parser, max_length=False,
                       note='Instead of the edge cases: one input case, "text", the padded batch of the texts')


#: What --hf refuses beside it: the model, its weights and its variant come from HF_DIR.
HF_CONFLICTS = {"--model": "model", "--config": "config", "--checkpoint": "checkpoint", "--all": "all",
                "--attention": "attention", "--positional": "positional", "--causal": "causal"}


def _hf_arguments(args) -> None:
    """--hf: refuse the flags that choose another model, weights or variant (one line, before any work),
    and default --tokenizer to HF_DIR for --text/--text-file (the checkpoint's own tokenizer)."""
    if not getattr(args, "hf", None):
        return
    given = [flag for flag, attr in HF_CONFLICTS.items() if getattr(args, attr, None)]
    if getattr(args, "init", "peaked") != "peaked":
        given.append("--init")
    require(not given, f"--hf validates the checkpoint in {args.hf} (its config, weights and attention); "
                       f"leave out {', '.join(given)}")
    if getattr(args, "tokenizer", None) is None and (getattr(args, "text", None) or getattr(args, "text_file", None)):
        args.tokenizer = args.hf


def _runs(args):
    from seo_export.models import TransformerConfig
    from seo_export.parity.validate import SWEEP_CONFIG, VARIANTS, VariantRun, file_run

    if getattr(args, "hf", None):
        from seo_export.parity.transformers_reference import TransformersReference

        _hf_arguments(args)  # again, for callers of _runs alone
        reference = TransformersReference.from_dir(args.hf)  # one line, exit 2, for a bad directory
        # The edge cases stay within the checkpoint's positions (transformers indexes its tables with them).
        args.max_len = min(args.max_len, reference.max_len)
        return [VariantRun(reference.config, args.seed, reference=reference)]
    base = TransformerConfig.from_json(args.config) if args.config else None
    if args.model:
        require(not args.all, "--model validates one file; leave out --all")
        return [file_run(Path(args.model), base, args.seed, args.checkpoint)]
    single = args.attention or args.positional or args.causal
    if single and not args.all:
        config = (base or SWEEP_CONFIG).replace(
            **{k: v for k, v in {"attention_type": args.attention, "positional_encoding_type": args.positional,
                                 "use_causal_mask": True if args.causal else None}.items() if v is not None})
        return [VariantRun(config, args.seed, args.checkpoint, args.init)]
    if base is not None and not args.all:
        return [VariantRun(base, args.seed, args.checkpoint, args.init)]
    sizes = base or SWEEP_CONFIG
    return [VariantRun(sizes.replace(attention_type=a, positional_encoding_type=p, use_causal_mask=c),
                       args.seed, args.checkpoint, args.init) for a, p, c in VARIANTS]


SHOWN_FAILURES = 10


def print_failures(console, report: dict) -> None:
    """Each failing case with where it breaks and the suggested fix: the terminal is where people act."""
    from rich.markup import escape

    from seo_export.parity.report.markdown import failure_lines

    lines = failure_lines(report)
    for line in lines[:SHOWN_FAILURES]:
        console.print(f"[red]FAIL[/red] {escape(line)}", soft_wrap=True)
    if len(lines) > SHOWN_FAILURES:
        console.print(f"... and {len(lines) - SHOWN_FAILURES} more failing cases (see report.md with --report-dir)")


def print_checks(console, report: dict) -> None:
    """validate --hf: one line each for the conversion (transformers vs zoo) and the export (zoo vs backends),
    saying which of the two differs."""
    from rich.markup import escape

    from seo_export.parity.report.schema import result_check

    counts: dict[str, list[int]] = {}
    failing: dict[str, list[str]] = {}
    for r in report["results"]:
        check = result_check(r)
        counts.setdefault(check, [0, 0])[1] += 1
        if r["verdict"]["passed"]:
            counts[check][0] += 1
        else:
            output = r["verdict"]["reason"].split(":", 1)[0]
            failing.setdefault(check, []).append(f"{output} on input {r['input']['name']}")
    if "conversion" not in counts:
        return
    for check, what in (("conversion", "conversion (transformers vs eager zoo PyTorch)"),
                        ("export", "export (eager zoo PyTorch vs the backends)")):
        if check not in counts:
            continue
        passed, total = counts[check]
        if passed == total:
            console.print(f"[green]{what}: {passed}/{total} cases pass[/green]")
            continue
        shown = escape("; ".join(dict.fromkeys(failing[check])))
        culprit = ("the converted model differs from transformers, not the export" if check == "conversion"
                   else "the export differs from eager zoo PyTorch")
        console.print(f"[red]{what}: {total - passed}/{total} cases FAIL: {culprit} ({shown})[/red]", soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from seo_export.parity.cases import InputCase, load_cases, make_cases
    from seo_export.parity.report import summary_table, validate_report, write_report_dir
    from seo_export.parity.validate import Tolerances, Validator, backends_for_file, new_workdir

    backends = None
    if args.backends is not None:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in backends if b not in BACKEND_NAMES]
        require(backends and not unknown, f"unknown backend {unknown[0] if unknown else '(none)'}; "
                                          f"choose from {', '.join(BACKEND_NAMES)}")
    report_dir = Path(args.report_dir) if args.report_dir else None
    if report_dir is not None:
        require(not report_dir.exists() or report_dir.is_dir(), f"--report-dir {report_dir} is a file")
        require(report_dir.parent.exists(), f"--report-dir: folder {report_dir.parent} does not exist")
    _hf_arguments(args)  # before the texts: --hf gives them its tokenizer by default
    texts = text_inputs(args, {"--inputs": args.inputs, "--batch": args.batch}, args.max_len, "--max-len")
    args.batch, args.max_len = args.batch or 3, args.max_len or 256  # the edge cases' defaults
    runs = _runs(args)
    if args.model:
        backends = backends_for_file(runs[0].model_file, runs[0].file_options["precision"], backends)
    backends = backends or list(BACKEND_NAMES)

    def cases_for(config):
        if texts is not None:
            return [InputCase("text", texts.feeds(config))]
        if args.inputs:
            return load_cases(args.inputs, config)
        return make_cases(config, args.batch, args.max_len, args.seed)

    for run_ in runs:  # fail on bad inputs before minutes of exporting
        cases_for(run_.config)
    console = Console(stderr=True)
    int8 = Int8Thresholds(min_cosine=args.int8_min_cosine, max_pooled_rel=args.int8_max_pooled_rel,
                          min_top1=args.int8_min_top1)
    tolerances = Tolerances(args.atol, args.rtol, args.fp16_factor, args.fp16_floor, int8)
    start = time.perf_counter()
    with new_workdir() as workdir, progress_lines() as progress:  # plain lines in CI logs
        validator = Validator(backends, tolerances, Path(workdir), not args.no_locate, progress)
        outcome = validator.run(runs, cases_for)
    for backend, reason in outcome.skipped.items():
        console.print(f"[yellow]{backend} skipped:[/yellow] {escape(reason)}")
    if not outcome.results:
        print("seo-export validate: error: no backend could run; see the reasons above", file=sys.stderr)
        return 2
    report = validate_report(outcome.results)
    report["summary"]["skipped"] = outcome.skipped
    report["summary"]["wall_s"] = round(time.perf_counter() - start, 1)
    output_console().print(summary_table(report))
    print_failures(console, report)
    print_checks(console, report)
    if report_dir is not None:
        write_report_dir(report, report_dir, outcome.attention_maps)
        console.print(f"reports written to {report_dir}")
    summary = report["summary"]
    console.print(f"{summary['passed']}/{summary['total']} checks passed in {summary['wall_s']} s")
    return 0 if summary["all_passed"] else 1
