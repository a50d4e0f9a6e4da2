"""Input cases: the lengths where attention variants break, with padding, seeded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seo_export.errors import UsageError
from seo_export.models import TransformerConfig


@dataclass
class InputCase:
    name: str  # why this length is tested, e.g. "window+1"
    feeds: dict[str, np.ndarray]

    @property
    def batch(self) -> int:
        return int(self.feeds["input_ids"].shape[0])

    @property
    def seq(self) -> int:
        return int(self.feeds["input_ids"].shape[1])

    @property
    def real_mask(self) -> np.ndarray:
        return self.feeds["attention_mask"].astype(bool)


def edge_lengths(config: TransformerConfig, max_len: int) -> dict[str, int]:
    """Named lengths: 1, around the window, below the landmark count, off the segment grid, longest."""
    window, landmarks = config.attention_window_size, config.attention_num_landmarks
    candidates = {
        "S=1": 1,
        "window-1": window - 1,
        "window": window,
        "window+1": window + 1,
        "landmarks-1": landmarks - 1,
        # ceil(S / L) segments leave the last one short: not a multiple of the segment size.
        "off-segment": 3 * landmarks + landmarks // 2 + 1,
        "longest": max_len,
    }
    if config.positional_encoding_type == "learned":
        max_len = min(max_len, config.positional_encoding_max_len)
    lengths: dict[str, int] = {}
    for name, seq in candidates.items():
        seq = min(seq, max_len)
        if seq >= 1 and seq not in lengths.values():
            lengths[name] = seq
    return lengths


def padded_batch(batch: int, seq: int, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """Row 0 full, the others right-padded to random lengths (at least one token each)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for row in range(1, batch):
        mask[row, rng.integers(1, seq + 1):] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def make_cases(config: TransformerConfig, batch: int = 3, max_len: int = 256, seed: int = 0) -> list[InputCase]:
    return [InputCase(name, padded_batch(batch, seq, config.vocab_size, seed + i))
            for i, (name, seq) in enumerate(edge_lengths(config, max_len).items())]


def load_cases(path: str | os.PathLike, config: TransformerConfig) -> list[InputCase]:
    """User inputs from an .npz with input_ids [B, S] and optionally attention_mask (never unpickled)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UsageError(f"inputs file {path} does not exist") from None
    except Exception as exc:  # zipfile and numpy raise several types for a bad file
        raise UsageError(f"cannot read inputs {path} as .npz: {str(exc).splitlines()[0]}") from None
    ids = arrays.get("input_ids")
    if ids is None or ids.ndim != 2 or ids.dtype.kind not in "iu" or 0 in ids.shape:
        raise UsageError(f"{path}: input_ids must be a non-empty [batch, seq] integer array")
    mask = arrays.get("attention_mask", np.ones_like(ids))
    if mask.shape != ids.shape or mask.dtype.kind not in "iub":
        raise UsageError(f"{path}: attention_mask must be an integer or bool array of shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise UsageError(f"{path}: token ids must be in [0, {config.vocab_size}), got {ids.min()}..{ids.max()}")
    return [InputCase(f"{path.name}", {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})]
