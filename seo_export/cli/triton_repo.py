"""``seo-export triton-repo MODEL -o REPO``: a Triton Inference Server model repository for an export or engine."""

from __future__ import annotations

import argparse
import sys

from seo_export.cli.common import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx file from `seo-export export`, or an engine from `seo-export build` "
                                      "(with its manifest ENGINE.json beside it)")
    parser.add_argument("-o", "--output", required=True, metavar="REPO",
                        help="the model repository folder (created if missing; it may hold other models)")
    parser.add_argument("--name", help="the model's name in the repository (default: the file's stem)")
    parser.add_argument("--max-batch-size", type=positive_int, metavar="N",
                        help="rows per execution the dynamic batcher may gather (default 32 for ONNX; for an "
                             "engine, the largest batch all its profiles take)")
    parser.add_argument("--instances", type=positive_int, default=1, metavar="N",
                        help="model instances (default 1); each python instance takes the host's cores / N threads")
    parser.add_argument("--max-queue-delay-us", type=int, default=0, metavar="US",
                        help="how long the dynamic batcher may hold a request to batch it with later ones "
                             "(default 0: batch what is queued when an instance is free)")
    parser.add_argument("--max-seq-len", type=positive_int, metavar="N",
                        help="refuse requests longer than N tokens (default: the model's own limit, if it has one)")
    parser.add_argument("--tokenizer", metavar="DIR",
                        help="also write a text entry point: NAME_tokenizer (the checkpoint's tokenizer.json) and "
                             "the ensemble NAME_text (a string tensor `text` in, NAME's outputs out)")
    parser.add_argument("--truncate", action="store_true",
                        help="with --tokenizer: cut texts over the limit instead of refusing them")
    parser.add_argument("--overwrite", action="store_true", help="replace model folders of the same name")


def run(args: argparse.Namespace) -> int:
    from seo_export.cli.common import require
    from seo_export.serve.repository import write_repository

    require(args.max_queue_delay_us >= 0, f"--max-queue-delay-us must be >= 0, got {args.max_queue_delay_us}")
    require(args.tokenizer or not args.truncate, "--truncate applies to the text entry point; add --tokenizer DIR")

    def notice(message: str) -> None:
        print(f"seo-export triton-repo: note: {message}", file=sys.stderr)

    written = write_repository(args.model, args.output, name=args.name, max_batch_size=args.max_batch_size,
                               instances=args.instances, tokenizer=args.tokenizer,
                               max_queue_delay_us=args.max_queue_delay_us, max_sequence_length=args.max_seq_len,
                               truncate=args.truncate, overwrite=args.overwrite, notice=notice)
    for model_name, kind in written.models.items():
        print(f"{written.repository / model_name}: {kind}")
    print(f"see {written.readme}; serve it here with: seo-export serve {written.repository}")
    return 0
