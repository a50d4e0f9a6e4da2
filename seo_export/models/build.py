"""Build a model from a config: seeded weights, or weights from a checkpoint file."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from seo_export.errors import UsageError
from seo_export.utils.files import sha256_file
from seo_export.models.config import TransformerConfig
from seo_export.models.transformer import SEOSpecificTransformer


# Seeded weight inits. "default" is BERT's (std 0.02): its attention is within a few percent of
# uniform and adds ~1% to the residual stream, so a miswired attention (q and k swapped, a wrong
# scale, a flipped bias) moves the output by less than FP16 rounding. "peaked" is for test and
# validation models: q/k projections at std PEAKED_QK_GAIN / sqrt(hidden) give attention logits of
# std ~4 on LayerNorm'd inputs (a head's largest probability ~0.2-0.6), v and output projections at
# std 1 / sqrt(hidden) make the attention block's output as large as its input, and relative
# tables at std PEAKED_TABLE_STD shift logits by about one unit.
INITS = ("default", "peaked")
PEAKED_QK_GAIN = 2.0
PEAKED_TABLE_STD = 0.5


def build_model(config: TransformerConfig, seed: int = 0, checkpoint: str | os.PathLike | None = None,
                init: str = "default"):
    """An eval-mode model; the same seed and init give the same weights (a checkpoint replaces them)."""
    if init not in INITS:
        raise UsageError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SEOSpecificTransformer(config)
        if init == "peaked":
            sharpen_attention(model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


@torch.no_grad()
def sharpen_attention(model: SEOSpecificTransformer) -> None:
    """Redraw q/k projections and relative tables so attention is far from uniform (see INITS)."""
    unit = model.config.hidden_size ** -0.5
    for name, param in model.named_parameters():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            param.normal_(std=PEAKED_QK_GAIN * unit)
        elif name.endswith(("v_proj.weight", "out_proj.weight")):
            param.normal_(std=unit)
        elif name.endswith(("rel_key", "rel_value", "positional.bias")):
            param.normal_(std=PEAKED_TABLE_STD)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a torch file with weights_only=True (never a full unpickle)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(
            f"cannot read checkpoint {path}: it holds Python objects that a weights-only load refuses; "
            "save the weights with safetensors or as a plain state_dict of tensors"
        ) from None
    except Exception as exc:  # every library raises its own type for a corrupt file
        raise UsageError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"checkpoint {path} does not hold a state dict of tensors")
    return state


def load_checkpoint(model: SEOSpecificTransformer, path: str | os.PathLike) -> None:
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise UsageError(f"checkpoint {path} does not fit the config: {'; '.join(parts)}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise UsageError(
                f"checkpoint {path} does not fit the config: {name} has shape {tuple(tensor.shape)}, "
                f"the config needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)


def weights_provenance(seed: int, checkpoint: str | os.PathLike | None, init: str = "default") -> dict:
    """What an exported file records so the eager model can be rebuilt from it."""
    if checkpoint:
        return {"checkpoint_sha256": sha256_file(checkpoint)}
    return {"seed": seed} if init == "default" else {"seed": seed, "init": init}


def rebuild_model(config: TransformerConfig, provenance: dict, checkpoint: str | os.PathLike | None = None):
    """The eager model an exported file was made from, given its recorded provenance."""
    if "checkpoint_sha256" in provenance:
        if checkpoint is None:
            raise UsageError("this model's weights came from a checkpoint; pass the same file with --checkpoint")
        if sha256_file(checkpoint) != provenance["checkpoint_sha256"]:
            raise UsageError(f"checkpoint {checkpoint} is not the one this model was exported from (sha256 differs)")
        return build_model(config, checkpoint=checkpoint)
    if "seed" not in provenance:
        if checkpoint is not None:  # the caller vouches for these weights (torch_model_from_onnx compares them)
            return build_model(config, checkpoint=checkpoint)
        raise UsageError("the model file does not record where its weights came from: pass its weights with "
                         "--checkpoint, or export it with `seo-export export`, which records them")
    return build_model(config, seed=int(provenance["seed"]), init=provenance.get("init", "default"))
