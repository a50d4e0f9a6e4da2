"""``seo-export inspect``: what an exported ONNX file is."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from seo_export.export.inspect import describe, load_onnx


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx file")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = describe(load_onnx(args.model))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    console = Console()
    meta = Table(title=f"{args.model}", show_header=False)
    for key, value in info["seo_export"].items():
        if key == "config":
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
        meta.add_row(key, str(value))
    meta.add_row("opsets", ", ".join(f"{d}:{v}" for d, v in info["opsets"].items()))
    console.print(meta)
    io = Table(title="inputs and outputs")
    for column in ("kind", "name", "dtype", "shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for value in info[kind]:
            io.add_row(kind[:-1], value["name"], value["dtype"], str(value["shape"]))
    console.print(io)
    ops = Table(title="op counts")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in info["op_counts"].items():
        ops.add_row(op, str(count))
    console.print(ops)
    if info["custom_nodes"]:
        custom = Table(title="custom nodes")
        for column in ("node", "op", "attributes"):
            custom.add_column(column)
        for node in info["custom_nodes"]:
            custom.add_row(node["name"], node["op"], ", ".join(f"{k}={v}" for k, v in node["attributes"].items()))
        console.print(custom)
    return 0
