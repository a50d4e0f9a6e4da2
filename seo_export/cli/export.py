"""``seo-export export``: write a model variant to ONNX."""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from seo_export.cli.common import add_model_arguments, config_from_args

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 20  # as in seo_export.export.exporter, which checks them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--checkpoint", help="weights: .safetensors, or a torch file loaded with weights_only=True")
    parser.add_argument("--init", choices=("default", "peaked"), default="default",
                        help="seeded weights without --checkpoint: default (BERT's 0.02) or peaked (attention far "
                             "from uniform, as validate's test models; see README)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16 writes the strongly typed graph TensorRT builds as it is")
    parser.add_argument("--io-dtype", choices=("fp32", "fp16"), default="fp32", help="dtype of the float outputs")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET}: the first with Gelu)")
    parser.add_argument("--keep-fp32", action="append", default=[], metavar="MODULE",
                        help="with --precision fp16, keep this module in FP32 (e.g. layers.3.attention); repeatable")
    parser.add_argument("--decomposed", action="store_true", help="inline the seo:: nodes: standard ops only")
    parser.add_argument("-o", "--output", required=True, help="output .onnx path (written atomically)")


def run(args: argparse.Namespace) -> int:
    from seo_export.export.exporter import export_onnx
    from seo_export.models.build import build_model, weights_provenance

    console = Console(stderr=True)
    config = config_from_args(args)
    model = build_model(config, args.seed, args.checkpoint, args.init)
    start = time.perf_counter()
    with console.status("exporting") as status:
        result = export_onnx(model, args.output, precision=args.precision, opset=args.opset,
                             decomposed=args.decomposed, io_dtype=args.io_dtype,
                             progress=lambda message: status.update(message),
                             weights=weights_provenance(args.seed, args.checkpoint, args.init),
                             keep_fp32=tuple(args.keep_fp32))
    console.print(
        f"wrote {result.path} ({result.precision}, opset {result.opset}, "
        f"{sum(result.op_counts.values())} nodes, {result.custom_nodes} seo:: nodes) "
        f"in {time.perf_counter() - start:.1f} s\nsha256 {result.sha256}"
    )
    return 0
