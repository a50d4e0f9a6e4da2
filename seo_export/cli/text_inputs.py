"""``--tokenizer DIR --text ... --text-file FILE``: text inputs for ``run``, ``validate`` and ``bench``.

The texts go through the checkpoint's own ``tokenizer.json`` (``seo_export.text``): special tokens,
right padding to the longest text, attention_mask. A text longer than the limit (the tightest of
the model's, the tokenizer's model_max_length and the caller's maximum) is refused unless
``--truncate`` is given; each cut text then gets one notice line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from seo_export.cli.common import positive_int, require

GROUP_DESCRIPTION = ("texts tokenized with a Hugging Face checkpoint's own fast tokenizer (tokenizer.json), "
                     "[CLS]/[SEP] as it adds them, right-padded to the longest text")


def add_text_arguments(parser: argparse.ArgumentParser, max_length: bool = True, note: str = "") -> None:
    """The text options; ``max_length`` adds ``--max-length`` (validate reuses its ``--max-len``); ``note``
    says what the command does with the texts."""
    group = parser.add_argument_group("text in", f"{GROUP_DESCRIPTION}. {note}" if note else GROUP_DESCRIPTION)
    group.add_argument("--tokenizer", metavar="DIR",
                       help="checkpoint folder with tokenizer.json (its tokenizer_config.json or "
                            "special_tokens_map.json give the pad token and model_max_length)")
    group.add_argument("--text", action="append", metavar="TEXT", help="a text; repeat for a batch")
    group.add_argument("--text-file", action="append", metavar="FILE",
                       help="UTF-8 file, one text per line, after the --text ones (an empty line is an error)")
    group.add_argument("--truncate", action="store_true",
                       help="cut texts longer than the limit (the tightest of the model's positions, the tokenizer's "
                            "model_max_length and the maximum given), keeping the special tokens, with a notice per "
                            "text on stderr; default: refuse them")
    if max_length:
        group.add_argument("--max-length", type=positive_int, metavar="N",
                           help="at most N tokens per text, special tokens included (below the model's own limit)")


def _given(args: argparse.Namespace) -> bool:
    return args.text is not None or args.text_file is not None


class TextInputs:
    """The texts and the tokenizer, read once; ``feeds`` encodes them for a model's limit and vocabulary."""

    def __init__(self, args: argparse.Namespace, max_length: int | None, max_length_flag: str):
        from seo_export.text import collect_texts, load_tokenizer

        self.texts = collect_texts(args.text, args.text_file)  # file and empty-text errors before the tokenizer
        self.tokenizer = load_tokenizer(args.tokenizer)
        self.truncate = args.truncate
        self.caller_limit = (max_length, f"{max_length_flag} is {max_length}") if max_length else None
        self.command = getattr(args, "command", None) or "text"
        self._cache: dict[tuple, dict[str, np.ndarray]] = {}

    def notice(self, message: str) -> None:
        print(f"seo-export {self.command}: note: {message}", file=sys.stderr, flush=True)

    def feeds(self, configs: Sequence | Mapping | object | None) -> dict[str, np.ndarray]:
        """Feeds for every model in ``configs`` (TransformerConfig or config dicts; one or several, or None
        where the model's config is unknown): the tightest limit and smallest vocabulary among them."""
        from seo_export.text import encode, model_limit, tightest

        if configs is None:
            configs = []
        elif isinstance(configs, Mapping) or not isinstance(configs, Sequence):
            configs = [configs]
        value = (lambda c, name: c.get(name) if isinstance(c, Mapping) else getattr(c, name, None))
        limit = tightest([*(model_limit(c) for c in configs), self.tokenizer.limit, self.caller_limit])  # ties: the model's
        vocabs = [value(c, "vocab_size") for c in configs if isinstance(value(c, "vocab_size"), int)]
        pads = [value(c, "pad_token_id") for c in configs if isinstance(value(c, "pad_token_id"), int)]
        key = (limit, min(vocabs, default=None), pads[0] if pads else None)
        if key not in self._cache:  # one notice per truncated text, however many models take the texts
            self._cache[key] = encode(self.tokenizer, self.texts.texts, limit, self.truncate, vocab_size=key[1],
                                      pad_id=key[2], labels=self.texts.labels, notice=self.notice)
        return {name: array.copy() for name, array in self._cache[key].items()}


def text_inputs(args: argparse.Namespace, conflicts: Mapping[str, object], max_length: int | None = None,
                max_length_flag: str = "--max-length") -> TextInputs | None:
    """The text inputs the arguments ask for, or None; one-line errors for flags that do not go together.

    ``conflicts``: flag -> whether it was given; each is refused beside --text/--text-file.
    """
    if not _given(args):
        extras = [flag for flag, on in (("--tokenizer", args.tokenizer), ("--truncate", args.truncate),
                                        ("--max-length", getattr(args, "max_length", None))) if on]
        require(not extras, f"{extras[0] if extras else ''} applies to text inputs; add --text or --text-file")
        return None
    for flag, on in conflicts.items():
        require(not on, f"give --text/--text-file or {flag}, not both")
    require(args.tokenizer, "--text and --text-file need --tokenizer DIR, the checkpoint folder with tokenizer.json")
    return TextInputs(args, max_length, max_length_flag)
