"""Entry point: parse, dispatch to a subcommand, turn known errors into one-line messages."""

from __future__ import annotations

import argparse
import importlib
import sys

from seo_export import __version__
from seo_export.errors import SeoExportError

# name -> module under seo_export.cli; each module defines add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "info": "Show versions of torch, ONNX, ONNX Runtime, Triton, TensorRT and whether a CUDA GPU is visible.",
    "forward": "Run one forward pass of a model built from a config, and print output shapes and statistics.",
    "convert": "Convert a local Hugging Face checkpoint (BERT, RoFormer, Longformer) into a zoo config and weights.",
    "export": "Export a model variant to ONNX (seo:: custom nodes with portable function bodies).",
    "validate": "Check exported variants against eager PyTorch on ONNX Runtime (and TensorRT), find breaks.",
    "inspect": "Show what an exported ONNX file is: metadata, inputs/outputs, op counts, custom nodes.",
    "sanitize": "Run a graph tool (polygraphy sanitize, onnxslim, onnxsim) and keep seo nodes, metadata and outputs.",
    "build": "Build a TensorRT engine (and its manifest) from an ONNX file, with optimization profiles.",
    "run": "Run inference on an engine (TensorRT) or an ONNX file (ONNX Runtime or eager PyTorch); print latency.",
    "bench": "Benchmark variants on eager PyTorch, ONNX Runtime and TensorRT: latency, speedup, peak memory.",
    "plugins": "Compile the seo plugin kernels ahead of time to PTX (`plugins compile`), no GPU needed.",
    "triton-repo": "Write a Triton Inference Server model repository for an ONNX file or engine (config.pbtxt, model.py).",
    "serve": "Serve a model repository on a Triton Inference Server on 127.0.0.1 until SIGINT/SIGTERM.",
}


def module_name(command: str) -> str:
    """The module under seo_export.cli of a command: dashes become underscores (triton-repo -> triton_repo)."""
    return f"seo_export.cli.{command.replace('-', '_')}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seo-export",
        description="Export, build, run and validate transformers with local, landmark and relative attention.",
    )
    parser.add_argument("--version", action="version", version=f"seo-export {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name(name)).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(module_name(args.command))
    try:
        return module.run(args)
    except SeoExportError as exc:
        print(f"seo-export {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"seo-export {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
