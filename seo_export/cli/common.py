"""Shared by subcommands: which model, from which config and weights; progress of long runs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from seo_export.errors import UsageError
from seo_export.models import ATTENTION_TYPES, POSITIONAL_ENCODING_TYPES, TransformerConfig


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--config", help="TransformerConfig JSON file (defaults: the dataclass defaults)")
    group.add_argument("--attention", choices=ATTENTION_TYPES, help="override attention_type")
    group.add_argument("--positional", choices=POSITIONAL_ENCODING_TYPES, help="override positional_encoding_type")
    group.add_argument("--causal", action="store_true", default=None, help="override use_causal_mask to true")
    group.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation (default 0)")


def config_from_args(args: argparse.Namespace) -> TransformerConfig:
    config = TransformerConfig.from_json(args.config) if args.config else TransformerConfig()
    overrides = {
        "attention_type": args.attention,
        "positional_encoding_type": args.positional,
        "use_causal_mask": args.causal,
    }
    return config.replace(**{k: v for k, v in overrides.items() if v is not None})


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def output_console():
    """A rich Console for results: full width in a terminal, 200 columns when piped (no 80-column cut)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


#: ``progress(message, done=None, total=None)``: a step of a long run starts or ends.
ProgressFn = Callable[..., None]


@contextlib.contextmanager
def progress_lines(stream=None) -> Iterator[ProgressFn]:
    """Progress of a long run on ``stream`` (stderr): a transient live bar on a terminal; elsewhere
    (CI logs, pipes), where a live bar shows nothing until the run ends, one plain line per call,
    ``[done/total] message``, flushed at once."""
    stream = sys.stderr if stream is None else stream
    if not getattr(stream, "isatty", lambda: False)():
        def plain(message: str, done: int | None = None, total: int | None = None) -> None:
            print(f"[{done}/{total}] {message}" if total else message, file=stream, flush=True)

        yield plain
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=stream, force_terminal=True), transient=True) as bar:
        task = bar.add_task("", total=None)

        def live(message: str, done: int | None = None, total: int | None = None) -> None:
            counts = {"completed": done, "total": total} if total else {}
            bar.update(task, description=message, **counts)

        yield live
