"""``validate --hf``: the transformers model itself as a reference beside eager zoo PyTorch.

The export is judged zoo vs backend as for any model; this module adds the conversion's check: the
eager zoo model converted from a Hugging Face checkpoint (``convert_hf``) against the transformers
model loaded from the same directory, on the same input cases, by the FP32 rule on valid tokens.
Its results are ordinary validate results with backend ``transformers`` and ``check: "conversion"``
(SCHEMA.md), so every report shows them beside the export's rows.

transformers is imported only here and only when asked for: a missing install is one line naming
the ``hf`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from seo_export.convert import convert_hf
from seo_export.convert.output import Conversion
from seo_export.errors import MissingDependencyError, UsageError
from seo_export.export.internals import internal_names, module_of
from seo_export.parity.cases import InputCase
from seo_export.parity.metrics import compare
from seo_export.parity.report import make_break, make_input, validate_result
from seo_export.parity.tolerance import FP32_RULE, Verdict, check_fp32, combine

#: The backend name of the conversion's rows: eager zoo PyTorch against this model.
BACKEND = "transformers"
#: ``check`` of those rows (the export's rows are ``export``, the default).
CHECK = "conversion"
HF_EXTRA = "pip install 'seo-export[hf]'"
#: Outputs compared where both sides have them, in report order; the others have no sequence axis.
OUTPUTS = ("last_hidden_state", "pooler_output", "logits")
#: Families whose transformers position ids count the non-pad tokens (RoBERTa-style): a valid token
#: holding pad_token_id shifts every later position, which no tokenizer produces but random ids do.
POSITIONS_FROM_IDS = ("longformer",)
#: Where a break found by this check points: the mapping (or the zoo's computation), not the export.
BREAK_NOTE = ("the converted model differs from transformers here: check how the checkpoint's weights of this "
              "module were mapped (seo-export convert writes them to conversion.json); the export is not involved")


def import_transformers(purpose: str = "validate --hf"):
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(f"{purpose} runs the checkpoint with transformers, which is not installed; "
                                     f"install it with: {HF_EXTRA}") from None
    return transformers


@contextlib.contextmanager
def quiet_transformers():
    """No progress bars or info/warnings from transformers (weights loading, Longformer's padding notice)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_transformers_model(path: Path):
    """The checkpoint's own class (config.json ``architectures``) or AutoModel: local files only,
    float32, eval, eager attention."""
    transformers = import_transformers()
    with quiet_transformers():
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
            names = getattr(config, "architectures", None) or []
            cls = getattr(transformers, names[0], None) if names else None
            cls = cls if cls is not None and hasattr(cls, "from_pretrained") else transformers.AutoModel
            model = cls.from_pretrained(path, local_files_only=True, attn_implementation="eager")
        except Exception as exc:  # OSError, ValueError, KeyError, ...: transformers raises many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"transformers cannot load {path}: {first}") from None
    return model.to(torch.float32).eval()


class TransformersReference:
    """A checkpoint directory converted in memory, and the transformers model it was converted from."""

    def __init__(self, path: Path, conversion: Conversion, model):
        self.path, self.conversion, self.model = path, conversion, model

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "TransformersReference":
        path = Path(path)
        import_transformers()  # before the conversion: a missing install is the first thing to say
        conversion = convert_hf(path)  # refuses a non-checkpoint or unrepresentable one, in one line
        return cls(path, conversion, load_transformers_model(path))

    @property
    def config(self):
        return self.conversion.config

    @property
    def model_type(self) -> str | None:
        return self.conversion.record["source"]["model_type"]

    @property
    def max_len(self) -> int:
        """The longest input the checkpoint takes: its position table (the converter's max_len)."""
        return self.config.positional_encoding_max_len

    def save_weights(self, directory: Path) -> Path:
        """The converted weights as a safetensors file in ``directory`` (validate's temporary workdir)."""
        from safetensors.torch import save_file

        path = Path(directory) / "hf-converted.safetensors"
        save_file({k: v.contiguous() for k, v in self.conversion.state_dict.items()}, str(path),
                  metadata={"format": "pt"})
        return path

    # ------------------------------------------------------------------------- inputs

    def prepare_cases(self, cases: list[InputCase]) -> list[InputCase]:
        """Cases as a tokenizer of this checkpoint would give them: padded positions hold
        pad_token_id, and for families that count positions over non-pad ids (Longformer) no valid
        token does (a random id equal to it is moved to the next id). Refuses a case past the
        checkpoint's positions."""
        pad, vocab = self.config.pad_token_id, self.config.vocab_size
        prepared = []
        for case in cases:
            if case.seq > self.max_len:
                raise UsageError(f"input {case.name} has {case.seq} tokens, but {self.path} takes at most "
                                 f"{self.max_len} (its position table)")
            ids = np.array(case.feeds["input_ids"], dtype=np.int64, copy=True)
            real = case.real_mask
            if self.model_type in POSITIONS_FROM_IDS:
                ids[real & (ids == pad)] = pad + 1 if pad + 1 < vocab else pad - 1
            ids[~real] = pad
            prepared.append(dataclasses.replace(case, feeds={**case.feeds, "input_ids": ids}))
        return prepared

    # ------------------------------------------------------------------------- outputs

    def outputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """transformers' outputs and internals, named as the zoo's (``export.internals``)."""
        ids = torch.from_numpy(np.ascontiguousarray(feeds["input_ids"]))
        mask = torch.from_numpy(np.ascontiguousarray(feeds["attention_mask"]))
        seq = ids.shape[1]
        base = self.model.base_model
        dense = attention_output_modules(base)
        captured: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in dense]
        try:
            with torch.inference_mode(), quiet_transformers():
                out = base(input_ids=ids, attention_mask=mask, output_hidden_states=True, return_dict=True)
                for hook in hooks:  # the task model below runs the encoder again
                    hook.remove()
                # a task model: its head's output too, as transformers computes it
                task = self.model(input_ids=ids, attention_mask=mask, return_dict=True) if self.model is not base \
                    else None
        except Exception as exc:  # an input transformers refuses (e.g. past a position table): one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"transformers cannot run {self.path} on input ids of shape {list(ids.shape)}: "
                             f"{first}") from None
        finally:
            for hook in hooks:
                hook.remove()
        values = {"last_hidden_state": out.last_hidden_state}
        if getattr(out, "pooler_output", None) is not None:
            values["pooler_output"] = out.pooler_output
        if getattr(task, "logits", None) is not None:
            values["logits"] = task.logits
        hidden = out.hidden_states or ()
        layers = len(hidden) - 1
        if layers >= 0:
            values["embeddings.output"] = hidden[0]
        for i in range(layers):
            values[f"layers.{i}.output"] = hidden[i + 1]
            if len(captured) == layers:  # Longformer pads to a multiple of its window inside
                values[f"layers.{i}.attention.output"] = captured[i][:, :seq]
        return {name: value.float().numpy() for name, value in values.items()}

    # ------------------------------------------------------------------------- the check

    def check_case(self, model, variant: dict, case: InputCase, atol: float, rtol: float,
                   find_break: bool = True) -> dict:
        """One validate result: eager zoo ``model`` (FP32) against transformers on ``case``."""
        expected = self.outputs(case.feeds)
        actual = zoo_outputs(model, case.feeds)
        names = [n for n in OUTPUTS if n in expected and n in actual]

        def judge(name: str, a: np.ndarray, e: np.ndarray) -> Verdict:
            if a.shape != e.shape:
                return Verdict(False, FP32_RULE, atol, None, None,
                               f"shape {list(a.shape)} differs from transformers' {list(e.shape)}")
            return check_fp32(a, e, case.real_mask, atol=atol, rtol=rtol, has_seq_axis=has_seq_axis(name, e))

        verdicts = {name: judge(name, actual[name], expected[name]) for name in names}
        verdict = combine(verdicts)
        outputs = {name: compare(actual[name], expected[name], case.real_mask, rtol=rtol,
                                 has_seq_axis=has_seq_axis(name, expected[name]))
                   for name in names if actual[name].shape == expected[name].shape}
        found = None
        if not verdict.passed and find_break:
            found = make_break(first_difference(judge, actual, expected, verdicts, model.config.num_layers),
                               note=BREAK_NOTE)
        return validate_result(variant, BACKEND, make_input(case.batch, case.seq, case.name), outputs, verdict,
                               eager_precision="fp32", break_=found, check=CHECK)


def has_seq_axis(name: str, value: np.ndarray) -> bool:
    """Per-token outputs and internals have one; pooler_output and sequence logits [batch, labels] do not."""
    if name == "pooler_output":
        return False
    return name != "logits" or value.ndim >= 3


def first_difference(judge, actual: dict, expected: dict, verdicts: dict[str, Verdict], num_layers: int) -> str:
    """The first module, in graph order, whose output leaves tolerance: embeddings, a layer's attention,
    the rest of a layer, then the pooler and the classifier (when every internal passes)."""
    for name in internal_names(num_layers):
        if name in actual and name in expected and not judge(name, actual[name], expected[name]).passed:
            return module_of(name)
    if "pooler_output" in verdicts and not verdicts["pooler_output"].passed:
        return "pooler"
    if "logits" in verdicts and not verdicts["logits"].passed:
        return "classifier"
    return "layers.%d" % (num_layers - 1) if num_layers else "embeddings"


def attention_output_modules(base) -> list:
    """Each layer's attention output projection (before dropout, residual and LayerNorm, like the
    zoo's attention block): ``encoder.layer.{i}.attention.output.dense`` in BERT-like encoders;
    none where a model is laid out otherwise (then attention internals are not compared)."""
    try:
        return [layer.attention.output.dense for layer in base.encoder.layer]
    except (AttributeError, TypeError):
        return []


def zoo_outputs(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The eager zoo model's outputs (``logits`` where it has a head) and internals, in FP32."""
    ids = torch.from_numpy(np.ascontiguousarray(feeds["input_ids"]))
    mask = torch.from_numpy(np.ascontiguousarray(feeds["attention_mask"]))
    captured: list[torch.Tensor] = []
    hooks = [layer.attention.register_forward_hook(lambda _m, _i, out: captured.append(out[0]))
             for layer in model.layers]
    try:
        with torch.inference_mode():
            out = model(ids, mask, output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    values = {name: out[name] for name in OUTPUTS if out.get(name) is not None}
    hidden = out["hidden_states"]
    values["embeddings.output"] = hidden[0]
    for i, attended in enumerate(captured):
        values[f"layers.{i}.attention.output"] = attended
        values[f"layers.{i}.output"] = hidden[i + 1]
    return {name: value.float().numpy() for name, value in values.items()}
