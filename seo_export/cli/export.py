"""``seo-export export``: write a model variant to ONNX."""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from seo_export.cli.common import add_model_arguments, config_from_args, require

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 20  # as in seo_export.export.exporter, which checks them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--checkpoint", help="weights: .safetensors, or a torch file loaded with weights_only=True")
    parser.add_argument("--init", choices=("default", "peaked"), default="default",
                        help="seeded weights without --checkpoint: default (BERT's 0.02) or peaked (attention far "
                             "from uniform, as validate's test models; see README)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="fp16 writes the strongly typed graph TensorRT builds as it is; int8 the FP32 graph with "
                             "its linear layers dynamically quantized by ONNX Runtime, for ONNX Runtime on a CPU "
                             "(TensorRT does not build it; see README, INT8 for CPU)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="with --precision int8: one weight scale per linear layer instead of one per output "
                             "channel (the default, measured in scripts/results/int8_choice.md)")
    parser.add_argument("--weight-type", choices=("QInt8", "QUInt8"),
                        help="with --precision int8: ONNX Runtime's INT8 weight type (default QInt8, the fast "
                             "U8S8 kernels; activations are QUInt8)")
    parser.add_argument("--io-dtype", choices=("fp32", "fp16"), default="fp32", help="dtype of the float outputs")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET}: the first with Gelu)")
    parser.add_argument("--keep-fp32", action="append", default=[], metavar="MODULE",
                        help="with --precision fp16, keep this module in FP32 (e.g. layers.3.attention); repeatable")
    parser.add_argument("--decomposed", action="store_true", help="inline the seo:: nodes: standard ops only")
    parser.add_argument("-o", "--output", required=True, help="output .onnx path (written atomically)")


def quantization_from_args(args: argparse.Namespace):
    """The INT8 settings (None for other precisions); refuses INT8 options without --precision int8
    and options INT8 has no use for, each in one line."""
    int8_options = [flag for flag, given in (("--per-tensor", args.per_tensor), ("--weight-type", args.weight_type))
                    if given]
    if args.precision != "int8":
        require(not int8_options, f"{int8_options[0] if int8_options else ''} applies only to --precision int8")
        return None
    require(not args.keep_fp32, "--keep-fp32 applies only to --precision fp16: --precision int8 already keeps "
                                "everything but the linear layers' weights in FP32")
    require(args.io_dtype == "fp32", "--precision int8 has FP32 inputs and outputs; --io-dtype fp16 does not apply")
    from seo_export.export.quantize import DEFAULT_WEIGHT_TYPE, QuantizationSettings

    return QuantizationSettings(per_channel=not args.per_tensor, weight_type=args.weight_type or DEFAULT_WEIGHT_TYPE)


def run(args: argparse.Namespace) -> int:
    from seo_export.export.exporter import export_onnx
    from seo_export.models.build import build_model, weights_provenance

    console = Console(stderr=True)
    quantization = quantization_from_args(args)
    config = config_from_args(args)
    model = build_model(config, args.seed, args.checkpoint, args.init)
    start = time.perf_counter()
    with console.status("exporting") as status:
        result = export_onnx(model, args.output, precision=args.precision, opset=args.opset,
                             decomposed=args.decomposed, io_dtype=args.io_dtype,
                             progress=lambda message: status.update(message),
                             weights=weights_provenance(args.seed, args.checkpoint, args.init),
                             keep_fp32=tuple(args.keep_fp32), quantization=quantization)
    console.print(
        f"wrote {result.path} ({result.precision}, opset {result.opset}, "
        f"{sum(result.op_counts.values())} nodes, {result.custom_nodes} seo:: nodes"
        + (f", {result.op_counts.get('MatMulInteger', 0)} INT8 linear layers" if result.precision == "int8" else "")
        + ") "
        f"in {time.perf_counter() - start:.1f} s\nsha256 {result.sha256}"
    )
    return 0
