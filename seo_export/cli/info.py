"""``seo-export info``: what this machine has for each pipeline stage."""

from __future__ import annotations

import argparse
import json
import platform

from rich.console import Console
from rich.table import Table

from seo_export import __version__
from seo_export.utils.environment import PACKAGES, package_version


def environment() -> dict:
    import torch

    info = {
        "seo_export": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = []
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = environment()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title=f"seo-export {__version__}", show_header=False)
    table.add_row("python", info["python"])
    table.add_row("platform", info["platform"])
    for name, version in info["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    table.add_row("ORT providers", ", ".join(info["onnxruntime_providers"]) or "-")
    table.add_row("CUDA GPU", info["gpu"] or "[dim]none visible[/dim]")
    table.add_row("torch threads", str(info["torch_threads"]))
    Console().print(table)
    return 0
