"""Reading a Hugging Face checkpoint directory, the mapping a family fills in, and the zoo's output.

Conversion never imports transformers: config.json is read as JSON and the weights with safetensors
(or ``torch.load(weights_only=True)`` for pytorch_model.bin), so deployment hosts need neither.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seo_export.errors import UsageError
from seo_export.models.build import read_state_dict
from seo_export.models.config import ConfigError, TransformerConfig
from seo_export.models.transformer import SEOSpecificTransformer

#: How transformers names weights, most preferred first.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
#: transformers' hidden_act -> the zoo's: "gelu" is torch's erf GELU ("gelu_python" the same formula
#: written out), "gelu_new" and "gelu_pytorch_tanh" its tanh approximation.
ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
_REQUIRED = object()


class NotRepresentable(UsageError):
    """A setting or tensor of the checkpoint that the zoo cannot reproduce exactly."""


@dataclass
class Checkpoint:
    path: Path
    config: dict
    tensors: dict[str, torch.Tensor]
    weights: list[Path]

    def setting(self, key: str, default=_REQUIRED):
        if key in self.config:
            return self.config[key]
        if default is _REQUIRED:
            raise NotRepresentable(f"config.json has no {key}")
        return default


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory; convert reads a local Hugging Face checkpoint directory "
                         "(config.json and model.safetensors), it downloads nothing")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{path} is not a Hugging Face checkpoint: it has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {config_path}: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"{config_path} is not a JSON object")
    weights = weight_files(path)
    tensors: dict[str, torch.Tensor] = {}
    for file in weights:
        tensors.update(read_state_dict(file))
    # Old BERT checkpoints (TF-era names) say gamma/beta; transformers renames them on load too.
    renamed = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
               for k, v in tensors.items()}
    return Checkpoint(path, config, renamed, weights)


def weight_files(path: Path) -> list[Path]:
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return [file]
        try:
            shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"cannot read {file}: {exc!r}") from None
        if not all(isinstance(s, str) and Path(s).name == s for s in shards):  # no paths outside the directory
            raise UsageError(f"{file} names shards outside {path}")
        return [path / shard for shard in shards]
    raise UsageError(f"{path} has no weights: expected model.safetensors (or model.safetensors.index.json and its "
                     "shards, or pytorch_model.bin)")


def activation(checkpoint: Checkpoint, default: str = "gelu") -> str:
    """The zoo's name for the checkpoint's hidden_act; refuses one the zoo does not compute."""
    act = checkpoint.setting("hidden_act", default)
    if act not in ACTIVATIONS:
        raise NotRepresentable(f"hidden_act {act!r} cannot be represented: the zoo computes "
                               f"{', '.join(sorted(ACTIVATIONS))} only")
    return ACTIVATIONS[act]


def zoo_config(**fields) -> TransformerConfig:
    try:
        return TransformerConfig(**fields)
    except ConfigError as exc:
        raise NotRepresentable(f"its settings give no valid zoo config: {exc}") from None


@dataclass
class Mapping:
    """What a family fills in: zoo tensors, and for the record where each came from or why not."""

    tensors: dict[str, torch.Tensor]  # the checkpoint's encoder tensors, task-model prefix removed
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    mapped: dict[str, tuple[str, str]] = field(default_factory=dict)  # zoo name -> (hf name, how)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # why -> hf names
    notes: list[str] = field(default_factory=list)

    def take(self, zoo: str, hf: str, how: str = "", transform=None) -> None:
        if hf not in self.tensors:
            raise NotRepresentable(f"the checkpoint has no tensor {hf}, which the encoder needs")
        tensor = self.tensors[hf]
        self.state[zoo] = transform(tensor) if transform else tensor
        self.mapped[zoo] = (hf, how)

    def take_module(self, zoo: str, hf: str, how: str = "", transform=None) -> None:
        for suffix in ("weight", "bias"):
            self.take(f"{zoo}.{suffix}", f"{hf}.{suffix}", how, transform)

    def drop(self, names, why: str) -> None:
        names = [n for n in names if n in self.tensors]
        if names:
            self.dropped.setdefault(why, []).extend(names)

    def check_complete(self, config: TransformerConfig) -> dict[str, torch.Tensor]:
        """Every tensor of the checkpoint used or dropped, and the zoo's every tensor filled at its shape."""
        accounted = {hf for hf, _ in self.mapped.values()} | {n for names in self.dropped.values() for n in names}
        unexpected = sorted(set(self.tensors) - accounted)
        if unexpected:
            raise NotRepresentable(f"it has {len(unexpected)} tensor(s) that the encoder does not have and that "
                                   f"cannot be mapped (first: {unexpected[0]})")
        with torch.device("meta"):
            expected = SEOSpecificTransformer(config).state_dict()
        for name, meta in expected.items():
            if name not in self.state:
                raise RuntimeError(f"the conversion left the zoo's {name} unset")  # a bug in a family mapping
            tensor, (hf, _) = self.state[name], self.mapped.get(name, (name, ""))
            if tuple(tensor.shape) != tuple(meta.shape):
                raise NotRepresentable(f"{hf} has shape {tuple(tensor.shape)} but config.json implies "
                                       f"{tuple(meta.shape)}: the config and the weights disagree")
        # float32: the zoo's dtype; upcasting half or bfloat16 weights is exact. clone: safetensors wants own storage.
        return {name: self.state[name].to(torch.float32).contiguous().clone() for name in expected}
