"""Text to ``{"input_ids", "attention_mask"}`` through a checkpoint's own fast tokenizer.

Reads ``tokenizer.json`` with the ``tokenizers`` library (not transformers), and, when present,
``tokenizer_config.json`` / ``special_tokens_map.json`` for the pad token and ``model_max_length``.
A batch is encoded as ``transformers`` encodes it with ``padding=True`` (and ``truncation=True``):
special tokens from the file's post-processor ([CLS] ... [SEP]), right padding to the longest text
with the pad token's id, attention_mask 1 on tokens and 0 on padding, int64. Whatever padding or
truncation ``tokenizer.json`` itself stores is switched off first, as transformers does per call
for the length and the cut. Right padding always, even where the file stores left padding (which
transformers keeps): the zoo counts positions from the left, so left padding would shift them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from seo_export.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    from seo_export.models.config import TransformerConfig

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # searched in this order, as transformers does
#: transformers writes int(1e30) (or 1e20) as model_max_length when a tokenizer has no limit.
NO_LIMIT = 10**12

Limit = tuple[int, str]  # (most tokens, why: "the model takes at most 512")


@dataclass
class TextTokenizer:
    """A loaded fast tokenizer and what its side files say."""

    tokenizer: object  # tokenizers.Tokenizer, padding and truncation switched off
    path: Path  # the tokenizer.json read
    pad_token: str | None
    pad_id: int | None
    model_max_length: int | None  # None: no real limit recorded

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def limit(self) -> Limit | None:
        if self.model_max_length is None:
            return None
        return self.model_max_length, f"the tokenizer's model_max_length is {self.model_max_length}"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise MissingDependencyError('reading text needs the tokenizers library: '
                                     'pip install "seo-export[hf]"') from None
    return tokenizers


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _token_text(value) -> str | None:
    """A special token as the side files write it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _max_length(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or value >= NO_LIMIT:
        return None
    return int(value)


def load_tokenizer(location: str | Path) -> TextTokenizer:
    """The tokenizer of a checkpoint directory (or a tokenizer.json file and the side files beside it)."""
    location = Path(location)
    if location.is_dir():
        path = location / TOKENIZER_FILE
        if not path.is_file():
            raise UsageError(f"{location} has no {TOKENIZER_FILE} (the fast tokenizer of a Hugging Face checkpoint; "
                             "slow tokenizers such as vocab.txt or sentencepiece files are not read)")
    elif location.is_file():
        path = location
    else:
        raise UsageError(f"tokenizer {location} does not exist")
    tokenizers = _tokenizers()
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        first = (str(exc).splitlines() or ["unreadable"])[0]
        raise UsageError(f"{path} is not a tokenizer file the tokenizers library can read ({first})") from None
    stored = tokenizer.padding or {}  # what tokenizer.json stores; transformers resets it per call, as here
    tokenizer.no_truncation()
    tokenizer.no_padding()

    side = {name: _read_json(path.parent / name) for name in CONFIG_FILES if (path.parent / name).is_file()}
    pad_token = next((t for t in (_token_text(data.get("pad_token")) for data in side.values()) if t), None)
    pad_id = None
    if pad_token is not None:
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise UsageError(f"the pad token {pad_token!r} named in {path.parent} is not in the vocabulary of {path}")
    elif isinstance(stored.get("pad_id"), int):
        pad_token, pad_id = stored.get("pad_token"), stored["pad_id"]
    model_max_length = _max_length(side.get("tokenizer_config.json", {}).get("model_max_length"))
    return TextTokenizer(tokenizer, path, pad_token, pad_id, model_max_length)


def _config_value(config, name: str):
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def model_limit(config: "TransformerConfig | dict | None") -> Limit | None:
    """The most tokens the model takes: a learned positional table's length; None when unbounded."""
    if config is None or _config_value(config, "positional_encoding_type") != "learned":
        return None
    most = _config_value(config, "positional_encoding_max_len")
    return (int(most), f"the model takes at most {int(most)}") if isinstance(most, int) else None


def tightest(limits: Sequence[Limit | None]) -> Limit | None:
    known = [limit for limit in limits if limit is not None]
    return min(known, key=lambda limit: limit[0]) if known else None


def label(index: int, labels: Sequence[str] | None) -> str:
    return labels[index] if labels else f"text {index + 1}"


def encode(tok: TextTokenizer, texts: Sequence[str], limit: Limit | None = None, truncate: bool = False,
           vocab_size: int | None = None, pad_id: int | None = None, labels: Sequence[str] | None = None,
           notice: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask"}`` int64 [len(texts), longest]; see the module docstring.

    ``limit``: (most tokens, why), special tokens included; a longer text is refused, or with
    ``truncate`` cut by the tokenizer's own truncation (special tokens kept) and reported through
    ``notice``. ``pad_id`` is used when the tokenizer names no pad token (the model's pad_token_id).
    ``labels`` name the texts in messages (default "text 1", "text 2", ...).
    """
    if not texts:
        raise UsageError("no text to tokenize")
    for i, text in enumerate(texts):
        if not text.strip():
            raise UsageError(f"{label(i, labels)} is empty")
    tokenizer = tok.tokenizer
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    lengths = [len(e.ids) for e in encodings]
    too_long = [i for i, n in enumerate(lengths) if limit is not None and n > limit[0]]
    if too_long and not truncate:
        i = too_long[0]
        raise UsageError(f"{label(i, labels)} has {lengths[i]} tokens; {limit[1]}; pass --truncate to cut it")
    if too_long:
        specials = tokenizer.num_special_tokens_to_add(is_pair=False)
        if limit[0] <= specials:
            raise UsageError(f"{limit[1]}, which leaves no room for text besides the {specials} special tokens")
        tokenizer.enable_truncation(max_length=limit[0])  # longest_first, right, stride 0: transformers' default
        try:
            encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
        finally:
            tokenizer.no_truncation()
        for i in too_long:
            if notice is not None:
                notice(f"{label(i, labels)}: {lengths[i]} tokens truncated to {len(encodings[i].ids)} ({limit[1]})")
    longest = max(len(e.ids) for e in encodings)
    padding = tok.pad_id if tok.pad_id is not None else pad_id
    if padding is None and any(len(e.ids) < longest for e in encodings):
        raise UsageError(f"the texts need padding, but {tok.path.parent} names no pad token "
                         "(pad_token in tokenizer_config.json or special_tokens_map.json)")
    input_ids = np.full((len(encodings), longest), padding or 0, dtype=np.int64)
    attention_mask = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        input_ids[row, :len(encoding.ids)] = encoding.ids
        attention_mask[row, :len(encoding.ids)] = 1
    if vocab_size is not None and input_ids.max() >= vocab_size:
        row = int(np.argwhere(input_ids >= vocab_size)[0][0])
        raise UsageError(f"the tokenizer {tok.path} has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{vocab_size} ({label(row, labels)} has token id {int(input_ids[row].max())}): "
                         "they do not belong together")
    return {"input_ids": input_ids, "attention_mask": attention_mask}
