"""``seo-export sanitize``: a graph tool's round trip that keeps what seo-export and TensorRT need.

Runs the tool (polygraphy's ``surgeon sanitize --fold-constants`` by default), puts back the
metadata and overload names it drops, refuses a result whose seo nodes or function bodies changed,
and compares the result's ONNX Runtime outputs with the input file's before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seo_export.cli.common import require
from seo_export.errors import SeoExportError

CHECK_SHAPES = ((2, 1), (3, 37))  # (batch, seq): one token, and several local windows with padding


class RoundTripError(SeoExportError):
    """The tool changed the model: exit 1, as a parity failure."""

    exit_code = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from seo_export.export.toolchain import TOOLS

    parser.add_argument("model", metavar="MODEL.onnx", help="an ONNX file from `seo-export export`")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where the result goes")
    parser.add_argument("--tool", choices=(*TOOLS, "none"), default="polygraphy",
                        help="polygraphy (default: `polygraphy surgeon sanitize --fold-constants`), onnxslim, "
                             "onnxsim, or none: only restore MODEL from --restore-from")
    parser.add_argument("--restore-from", metavar="EXPORTED.onnx",
                        help="the file as exported, when MODEL already went through a tool that dropped its "
                             "metadata: restore from it and compare outputs against it")
    parser.add_argument("--no-check", action="store_true", help="do not compare outputs on ONNX Runtime")


def _outputs(model, config: dict) -> list[dict[str, np.ndarray]]:
    """ONNX Runtime's outputs of ``model`` (a path or a ModelProto) on padded random batches."""
    from seo_export.backends.ort_runner import create_session
    from seo_export.cli.run import random_inputs

    session = create_session(model, ["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    limit = config.get("positional_encoding_max_len") if config.get("positional_encoding_type") == "learned" else None
    results = []
    for batch, seq in CHECK_SHAPES:
        feeds = random_inputs(batch, min(seq, limit or seq), config.get("vocab_size"), seed=0)
        results.append(dict(zip(names, session.run(names, feeds))))
    return results


def _output_problems(source_path: Path, source, result) -> list[str]:
    from seo_export.export.inspect import export_options, stored_metadata
    from seo_export.export.toolchain import output_problems

    config = stored_metadata(source, "config") or {}
    try:
        got = _outputs(result, config)
    except Exception as exc:  # ONNX Runtime raises several types for a model it refuses
        return [f"ONNX Runtime refuses it: {str(exc).splitlines()[0][-300:]}"]
    precision = export_options(source)["precision"]
    return [p for want, have in zip(_outputs(source_path, config), got) for p in output_problems(want, have, precision)]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from seo_export.export.exporter import save_model
    from seo_export.export.inspect import load_onnx
    from seo_export.export.postprocess import seo_nodes
    from seo_export.export.toolchain import contract_problems, restore, run_tool

    require(args.tool != "none" or args.restore_from, "--tool none only restores; give --restore-from EXPORTED.onnx")
    output = Path(args.output)
    require(output.parent.is_dir(), f"output folder {output.parent} does not exist")
    require(output.resolve() != Path(args.model).resolve(), "the output is the input file; choose another output")
    model = load_onnx(args.model, with_weights=True)
    source_path = Path(args.restore_from or args.model)
    source = load_onnx(source_path)
    nodes_before = len(model.graph.node)  # the tools may change the model they are given
    try:
        result = model if args.tool == "none" else run_tool(args.tool, model)
    except SeoExportError:
        raise
    except Exception as exc:  # the tools raise anything; the user needs the tool and its first line
        raise RoundTripError(f"{args.tool} failed on {args.model}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    restored = restore(result, source)
    problems = contract_problems(result, source)
    if not problems and not args.no_check:
        problems = _output_problems(source_path, source, result)
    if problems:
        raise RoundTripError(f"the result differs from {source_path.name} ({'; '.join(problems[:3])}); "
                             f"{output} not written")
    save_model(result, output)
    Console(stderr=True).print(
        f"wrote {output}: {args.tool}, {nodes_before} -> {len(result.graph.node)} nodes, "
        f"{len(seo_nodes(result))} seo nodes kept; restored {', '.join(restored) or 'nothing'}; "
        + ("outputs not compared" if args.no_check else "ONNX Runtime outputs within the round-trip tolerance"),
        highlight=False, markup=False, soft_wrap=True)
    return 0
