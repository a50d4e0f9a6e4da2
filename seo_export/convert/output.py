"""The converted model and its directory: config.json, model.safetensors, tokenizer files, conversion.json.

The directory is written beside its final name and renamed into place, so a failed conversion leaves
nothing, and an existing directory is only replaced (with ``overwrite``) once the new one is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from seo_export.errors import UsageError
from seo_export.models.config import TransformerConfig

CONFIG, WEIGHTS, RECORD = "config.json", "model.safetensors", "conversion.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")


@dataclass
class Conversion:
    """A checkpoint in the zoo's terms: ``model()`` builds it, ``save(dir)`` writes it."""

    config: TransformerConfig
    state_dict: dict[str, torch.Tensor]
    record: dict
    tokenizer_files: list[Path]

    def model(self):
        from seo_export.models.build import build_model

        model = build_model(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def save(self, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        from safetensors.torch import save_file

        out = Path(output_dir)
        check_output(out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any new directory
            self.config.to_json(tmp / CONFIG)
            save_file(self.state_dict, str(tmp / WEIGHTS), metadata={"format": "pt"})
            for file in self.tokenizer_files:
                shutil.copyfile(file, tmp / file.name)
            (tmp / RECORD).write_text(json.dumps(self.record, indent=2) + "\n")
            replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} exists and is not empty; choose a new directory or pass --overwrite")


def replace_dir(new: Path, out: Path) -> None:
    if not out.exists() or not any(out.iterdir()):
        os.replace(new, out)  # rename(2) replaces an empty directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old / out.name, out)  # put the old directory back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def tokenizer_files(path: Path) -> list[Path]:
    return [path / name for name in TOKENIZER_FILES if (path / name).is_file()]


def folded(name: str) -> str:
    """``encoder.layer.3.output.dense.bias`` -> ``encoder.layer.{i}.output.dense``: one entry per module kind."""
    return re.sub(r"\.(weight|bias)$", "", re.sub(r"\.\d+\.", ".{i}.", name))


def mapped_patterns(mapped: dict[str, tuple[str, str]]) -> list[dict]:
    """zoo name -> (hf name, how), folded over layers and weight/bias."""
    patterns: dict[tuple, int] = {}
    for zoo, (hf, how) in mapped.items():
        key = (folded(hf), folded(zoo), how)
        patterns[key] = patterns.get(key, 0) + 1
    return [{"from": hf, "to": zoo, **({"how": how} if how else {}), "tensors": n}
            for (hf, zoo, how), n in patterns.items()]


def dropped_groups(dropped: dict[str, list[str]]) -> list[dict]:
    return [{"tensors": sorted({folded(n) for n in names}), "count": len(names), "why": why}
            for why, names in dropped.items()]
