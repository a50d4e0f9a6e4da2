"""``seo-export build``: a TensorRT engine and its manifest from an (FP16) ONNX file."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from rich.table import Table

from seo_export.backends.tensorrt.profiles import (
    DEFAULT_PROFILE_FILE,
    ENGINES_DIR,
    load_profile_file,
    parse_profile,
)
from seo_export.errors import UsageError

SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def workspace_size(text: str) -> int:
    """``4G``, ``512M``, ``4096K`` (binary units, optional ``iB``/``B``); a plain number is MiB, as in trtexec."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMG])(?:I?B)?)?\s*", text.upper())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size such as 4G or 512M, got {text!r}")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2) or "M"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", metavar="MODEL.onnx", help="ONNX file from `seo-export export` (its types set the "
                                                           "engine's precision: export with --precision fp16)")
    parser.add_argument("-o", "--output", metavar="MODEL.engine",
                        help=f"engine path (default: {ENGINES_DIR}/MODEL.engine); the manifest goes to MODEL.engine.json")
    parser.add_argument("--profile", action="append", metavar="SPEC",
                        help="optimization profile batch=MIN:OPT:MAX,seq=MIN:OPT:MAX (repeat for more profiles)")
    parser.add_argument("--profile-file", metavar="FILE",
                        help=f"JSON profile file, or the name of one under {ENGINES_DIR}/ "
                             f"(default when no --profile: {DEFAULT_PROFILE_FILE})")
    parser.add_argument("--timing-cache", metavar="PATH",
                        help="timing cache read before and updated after the build (default: timing.cache "
                             "beside the engine)")
    parser.add_argument("--no-timing-cache", action="store_true", help="neither read nor write a timing cache")
    parser.add_argument("--workspace", type=workspace_size, metavar="SIZE",
                        help="builder workspace limit, e.g. 4G (default: TensorRT's, the GPU's memory)")
    parser.add_argument("--verbose", action="store_true", help="print TensorRT's log")


def profiles_from_args(args: argparse.Namespace) -> list:
    profiles = [parse_profile(spec) for spec in args.profile or []]
    if args.profile_file:
        profiles += load_profile_file(args.profile_file)
    if profiles:
        return profiles
    try:
        return load_profile_file(DEFAULT_PROFILE_FILE)
    except UsageError:
        raise UsageError(f"no --profile given and no {ENGINES_DIR}/{DEFAULT_PROFILE_FILE}.json here; pass --profile "
                         "batch=MIN:OPT:MAX,seq=MIN:OPT:MAX") from None


def plugin_layers_cell(layers: int | None, nodes: int) -> str:
    """``4 (of 4 seo nodes)``; red when some seo node did not become a plugin layer (TensorRT inlined
    its function body, so the engine runs without that plugin kernel)."""
    if layers is None:
        return f"[yellow]not counted[/yellow] (of {nodes} seo nodes)"
    text = f"{layers} (of {nodes} seo nodes)"
    return text if layers == nodes else f"[bold red]{text}: the others were inlined as plain layers[/bold red]"


def run(args: argparse.Namespace) -> int:
    from seo_export.backends.tensorrt.builder import build_engine
    from seo_export.cli.run import report_console

    profiles = profiles_from_args(args)
    onnx_path = Path(args.onnx)
    engine_path = Path(args.output) if args.output else ENGINES_DIR / f"{onnx_path.stem}.engine"
    if engine_path.suffix == ".json":
        raise UsageError(f"{engine_path} would be mistaken for a manifest; name the engine MODEL.engine")
    cache = None if args.no_timing_cache else Path(args.timing_cache or engine_path.parent / "timing.cache")

    start = time.perf_counter()
    result = build_engine(onnx_path, engine_path, profiles, timing_cache_path=cache, workspace=args.workspace,
                          verbose=args.verbose)
    elapsed = time.perf_counter() - start

    env = result.manifest.environment
    table = Table(title=f"built {engine_path} in {elapsed:.1f} s", show_header=False)
    table.add_row("engine", f"{engine_path} ({engine_path.stat().st_size / 2**20:.1f} MiB)")
    table.add_row("manifest", str(result.manifest_path))
    table.add_row("TensorRT / CUDA", f"{env.tensorrt_version} / {env.cuda_version}")
    table.add_row("GPU", f"{env.gpu_name} (sm {env.compute_capability})")
    table.add_row("plugins", env.plugin_manifest_sha256 or "[dim]none registered[/dim]")
    table.add_row("seo plugin layers", plugin_layers_cell(result.manifest.seo_plugin_layers, result.seo_nodes))
    for index, profile in enumerate(profiles):
        table.add_row(f"profile {index}", str(profile))
    table.add_row("timing cache", str(cache) if cache else "[dim]off[/dim]")
    if result.warnings and not args.verbose:
        table.add_row("TensorRT warnings", f"{len(result.warnings)} (see them with --verbose)")
    for note in result.jit_notes:
        table.add_row("JIT plugin path", note)
    report_console().print(table)
    return 0
