"""``seo-export forward``: one eager forward pass, as a smoke test of a config."""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from seo_export.cli.common import add_model_arguments, config_from_args, positive_int
from seo_export.models.build import build_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--checkpoint", help="weights: .safetensors, or a torch file loaded with weights_only=True")
    parser.add_argument("--batch", type=positive_int, default=2)
    parser.add_argument("--seq-len", type=positive_int, default=128)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    model = build_model(config, args.seed, args.checkpoint)
    generator = torch.Generator().manual_seed(args.seed)
    input_ids = torch.randint(1, config.vocab_size, (args.batch, args.seq_len), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[-1, args.seq_len // 2 + 1:] = 0  # the last sample is padded, as real batches are
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(input_ids, mask)
    elapsed = time.perf_counter() - start
    table = Table(title=f"{config.attention_type} attention, {config.positional_encoding_type} positions, "
                        f"batch {args.batch}, seq {args.seq_len}: {elapsed * 1e3:.1f} ms")
    for column in ("output", "shape", "mean", "std", "finite"):
        table.add_column(column)
    for name, value in out.items():
        table.add_row(name, str(tuple(value.shape)), f"{value.mean():.4f}", f"{value.std():.4f}",
                      str(bool(torch.isfinite(value).all())))
    Console().print(table)
    return 0 if all(torch.isfinite(v).all() for v in out.values()) else 1
