"""The rule for quantized (INT8) graphs, judged against eager FP32.

atol/rtol and the FP16 rule do not fit INT8: dynamic quantization moves every value a little (a
percent or so), everywhere, by design, so an elementwise bound either fails every healthy file or
lets a broken one through. What INT8 must keep is the direction of each token's hidden state, the
pooled summary and the model's decision. Three checks, one per kind of output:

- per-token cosine similarity (``last_hidden_state`` and any other [batch, seq, ...] output): the
  smallest cosine over real tokens must be at least ``min_cosine``;
- relative error of the pooled output (``pooler_output``, per sample, real samples only):
  ``max ||a - e|| / ||e||`` at most ``max_pooled_rel``;
- top-1 agreement (``logits``): the fraction of real samples (or tokens) whose argmax matches eager
  FP32's must be at least ``min_top1``. A sample whose eager top-1 and top-2 logits are closer
  than ``top1_tie`` x its logit spread (max - min) is a tie and is not counted. Top-1 cannot see a
  wrong scale that keeps the argmax (the classifier's own weight scale); ``max_logits_rel`` (off by
  default) adds the pooled check's relative error on the logits too.

Verdicts use ``tolerance.Verdict`` as the FP32/FP16 rules do, with ``measured <= threshold`` meaning
pass (so ``Verdict.margin`` and ``tolerance.combine`` rank them like the others): the cosine rule
measures ``1 - min cosine`` against ``1 - min_cosine``, the top-1 rule ``1 - agreement`` against
``1 - min_top1``. A NaN or Inf anywhere in the output fails, as in every rule.

The defaults come from ``scripts/int8_choice.py`` (``scripts/results/int8_choice.md``): the default
768-hidden, 12-layer model at B = 4, S = 512, peaked weights, and this project's small test models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seo_export.export.internals import PER_SAMPLE_OUTPUTS
from seo_export.parity.metrics import plain_float, region_masks
from seo_export.parity.tolerance import Verdict, combine

COSINE_RULE = "int8-token-cosine"
POOLED_RULE = "int8-pooled-relerr"
TOP1_RULE = "int8-top1"
INTERNAL_RULE = "int8-token-relerr"

# Measured with per-channel QInt8 weights (the export default). Healthy: the default 768-hidden,
# 12-layer model at B = 4, S = 512 reaches min token cosine 0.99930-0.99935 and pooled relative error
# 0.035-0.039 (standard, local, landmark); validate's 128-hidden, 2-layer sweep models, outside
# landmark attention, 0.99839-0.99972 and up to 0.049. Broken (one attention projection's weight
# scale x4 or x0.25): min cosine 0.63-0.94, pooled 0.27-0.86. The bars sit between, with room for the
# small models: 0.999 would fail three healthy sweep variants (relative attention at 0.9984-0.9989).

#: Smallest per-token cosine to eager FP32 on real tokens.
MIN_TOKEN_COSINE = 0.998
#: Largest per-sample relative error of the pooled output.
MAX_POOLED_REL = 0.075
#: Smallest top-1 agreement with eager FP32 over real samples, ties excepted: a healthy INT8 graph
#: never flipped an untied decision in the measurements above.
MIN_TOP1 = 1.0
#: Eager top-1 and top-2 logits closer than this fraction of the sample's logit spread make a tie:
#: healthy INT8 logits err by up to 9% of the spread (max abs error / (max - min), sweep models), so a
#: smaller gap may flip by quantization noise alone.
TOP1_TIE = 0.1

#: Largest per-token relative error ||a - e|| / ||e|| of an internal (a module's output) while the
#: break search walks the graph: cosine cannot see a module whose output is only scaled (a wrong
#: weight scale on an output projection), which shows only after the next residual and LayerNorm, in
#: the wrong block. Healthy INT8 internals of the sweep models reach 0.03-0.08, landmark ones 0.18.
MAX_INTERNAL_REL = 0.25



@dataclass(frozen=True)
class Int8Thresholds:
    """The rule's bars; every one can be overridden (validate's options, or these parameters)."""

    min_cosine: float = MIN_TOKEN_COSINE
    max_pooled_rel: float = MAX_POOLED_REL
    min_top1: float = MIN_TOP1
    top1_tie: float = TOP1_TIE
    max_logits_rel: float | None = None
    max_internal_rel: float = MAX_INTERNAL_REL


def _as64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _check_shapes(actual, expected) -> None:
    if np.shape(actual) != np.shape(expected):
        raise ValueError(f"arrays to compare have different shapes: {np.shape(actual)} and {np.shape(expected)}")


def _nonfinite(x) -> int:
    return int((~np.isfinite(np.asarray(x))).sum())


def _refuse(rule: str, threshold: float, actual, expected) -> Verdict | None:
    """A failing verdict for a non-finite reference or output (nothing sensible to measure)."""
    broken = _nonfinite(expected)
    if broken:
        return Verdict(False, rule, None, None, None, f"eager FP32 reference has {broken} NaN/Inf value(s)")
    bad = _nonfinite(actual)
    if bad:
        return Verdict(False, rule, threshold, None, None, f"output has {bad} NaN/Inf value(s)")
    return None


def _real_rows(n_rows: int, real_mask) -> np.ndarray:
    """Which samples hold at least one real token (all of them without a mask)."""
    if real_mask is None:
        return np.ones(n_rows, dtype=bool)
    mask = np.asarray(real_mask) != 0
    if mask.ndim != 2 or mask.shape[0] != n_rows:
        raise ValueError(f"real_mask {mask.shape} does not match the {n_rows} samples of the output")
    return mask.any(axis=1)


def _cosines(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Row-wise cosine of [n, d] arrays; a zero row against a zero row counts as 1, against another 0."""
    dots = (a * e).sum(axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(e, axis=-1)
    both_zero = ~a.any(axis=-1) & ~e.any(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def token_cosines(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None) -> np.ndarray:
    """Cosine of each real token's vector ([batch, seq, d] -> one value per real token)."""
    a, e = _as64(actual), _as64(expected)
    _check_shapes(a, e)
    if a.ndim < 3:
        raise ValueError(f"per-token cosine needs [batch, seq, features], got shape {a.shape}")
    real = region_masks(a.shape[:2], real_mask, has_seq_axis=True)["real"]
    return _cosines(a[real].reshape(int(real.sum()), -1), e[real].reshape(int(real.sum()), -1))


def pooled_relative_errors(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None) -> np.ndarray:
    """||a - e|| / ||e|| per real sample of a [batch, d] output (0 where both are zero)."""
    a, e = _as64(actual), _as64(expected)
    _check_shapes(a, e)
    rows = _real_rows(a.shape[0], real_mask)
    a, e = a[rows].reshape(int(rows.sum()), -1), e[rows].reshape(int(rows.sum()), -1)
    diff, norm = np.linalg.norm(a - e, axis=-1), np.linalg.norm(e, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, diff / np.where(norm > 0, norm, 1.0), np.where(diff > 0, np.inf, 0.0))


def top1_agreement(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
                   tie: float = TOP1_TIE, has_seq_axis: bool = False) -> tuple[int, int, int]:
    """(agreeing, counted, ties) over real samples ([batch, labels]) or real tokens ([batch, seq,
    labels] with ``has_seq_axis``); an eager top-1/top-2 gap within ``tie`` x the logit spread is a
    tie, not counted."""
    a, e = _as64(actual), _as64(expected)
    _check_shapes(a, e)
    if has_seq_axis:
        real = region_masks(a.shape[:2], real_mask, has_seq_axis=True)["real"]
    else:
        real = _real_rows(a.shape[0], real_mask)
    a, e = a[real].reshape(int(real.sum()), -1), e[real].reshape(int(real.sum()), -1)
    if e.shape[-1] < 2:
        raise ValueError("top-1 agreement needs at least two logits per sample")
    ordered = np.sort(e, axis=-1)
    gap, spread = ordered[:, -1] - ordered[:, -2], ordered[:, -1] - ordered[:, 0]
    counted = gap > tie * spread
    agree = (a.argmax(axis=-1) == e.argmax(axis=-1)) & counted
    return int(agree.sum()), int(counted.sum()), int((~counted).sum())


def check_token_cosine(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
                       min_cosine: float = MIN_TOKEN_COSINE) -> Verdict:
    """Pass iff every real token's cosine to eager FP32 is at least ``min_cosine``."""
    threshold = 1.0 - min_cosine
    refused = _refuse(COSINE_RULE, threshold, actual, expected)
    if refused:
        return refused
    cos = token_cosines(actual, expected, real_mask)
    if cos.size == 0:
        return Verdict(True, COSINE_RULE, threshold, 0.0, None, "no real token to compare")
    worst = float(cos.min())
    passed = worst >= min_cosine
    reason = (f"min per-token cosine {worst:.6f} {'>=' if passed else '<'} {min_cosine:g} over {cos.size} real "
              f"tokens (mean {float(cos.mean()):.6f})")
    return Verdict(passed, COSINE_RULE, threshold, 1.0 - worst, None, reason)


def check_pooled(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
                 max_relative: float = MAX_POOLED_REL) -> Verdict:
    """Pass iff every real sample's pooled output is within ``max_relative`` of eager FP32's (L2)."""
    refused = _refuse(POOLED_RULE, max_relative, actual, expected)
    if refused:
        return refused
    rel = pooled_relative_errors(actual, expected, real_mask)
    return _relative_verdict(POOLED_RULE, rel, max_relative, "pooled relative error ||a-e||/||e||", "samples")


def _relative_verdict(rule: str, rel: np.ndarray, max_relative: float, what: str, unit: str) -> Verdict:
    """Pass iff the largest relative error is at most ``max_relative``."""
    if rel.size == 0:
        return Verdict(True, rule, max_relative, 0.0, None, f"no real {unit[:-1]} to compare")
    worst = float(rel.max())
    passed = worst <= max_relative
    reason = f"{what} {worst:.4g} {'<=' if passed else '>'} {max_relative:g} (worst of {rel.size} {unit})"
    return Verdict(passed, rule, max_relative, worst, None, reason)


def check_top1(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
               min_agreement: float = MIN_TOP1, tie: float = TOP1_TIE, has_seq_axis: bool = False) -> Verdict:
    """Pass iff the top-1 agreement with eager FP32 over real, untied samples is at least ``min_agreement``."""
    threshold = 1.0 - min_agreement
    refused = _refuse(TOP1_RULE, threshold, actual, expected)
    if refused:
        return refused
    agree, counted, ties = top1_agreement(actual, expected, real_mask, tie=tie, has_seq_axis=has_seq_axis)
    tied = f", {ties} tie(s) not counted" if ties else ""
    if counted == 0:
        return Verdict(True, TOP1_RULE, threshold, 0.0, None, f"no untied real sample to compare{tied}")
    fraction = agree / counted
    passed = fraction >= min_agreement
    reason = (f"top-1 agreement {agree}/{counted} = {fraction:.3f} {'>=' if passed else '<'} {min_agreement:g}"
              f"{tied}")
    return Verdict(passed, TOP1_RULE, threshold, 1.0 - fraction, None, reason)


def check_token_relative(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
                         max_relative: float = MAX_INTERNAL_REL) -> Verdict:
    """Pass iff every real token's ||a - e|| / ||e|| is at most ``max_relative`` (for internals)."""
    refused = _refuse(INTERNAL_RULE, max_relative, actual, expected)
    if refused:
        return refused
    a, e = _as64(actual), _as64(expected)
    _check_shapes(a, e)
    real = region_masks(a.shape[:2], real_mask, has_seq_axis=True)["real"]
    rows = int(real.sum())
    rel = pooled_relative_errors(a[real].reshape(rows, -1), e[real].reshape(rows, -1))
    return _relative_verdict(INTERNAL_RULE, rel, max_relative, "per-token relative error", "tokens")


def check_int8(name: str, actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
               thresholds: Int8Thresholds | None = None, has_seq_axis: bool | None = None,
               internal: bool = False) -> Verdict:
    """The INT8 rule for one output by its name: ``logits`` by top-1 agreement, per-sample outputs
    (``pooler_output``) by relative error, the others (``last_hidden_state``, internals) by per-token cosine;
    an ``internal`` (a module's output, in the break search) also by per-token relative error.
    ``has_seq_axis`` defaults to ``name not in PER_SAMPLE_OUTPUTS``."""
    t = thresholds or Int8Thresholds()
    seq_axis = name not in PER_SAMPLE_OUTPUTS if has_seq_axis is None else has_seq_axis
    if internal and seq_axis:
        return combine({"cosine": check_token_cosine(actual, expected, real_mask, min_cosine=t.min_cosine),
                        "relative error": check_token_relative(actual, expected, real_mask,
                                                               max_relative=t.max_internal_rel)})
    if name == "logits":
        top1 = check_top1(actual, expected, real_mask, min_agreement=t.min_top1, tie=t.top1_tie,
                          has_seq_axis=seq_axis)
        if t.max_logits_rel is None or seq_axis:
            return top1
        relative = check_pooled(actual, expected, real_mask, max_relative=t.max_logits_rel)
        return combine({"top-1": top1, "relative error": relative})
    if not seq_axis:
        return check_pooled(actual, expected, real_mask, max_relative=t.max_pooled_rel)
    return check_token_cosine(actual, expected, real_mask, min_cosine=t.min_cosine)


def int8_figures(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                 real_mask: np.ndarray | None = None, tie: float = TOP1_TIE) -> dict:
    """The rule's error figures for a set of outputs, JSON-ready, for bench records and reports:
    min/mean token cosine, max pooled relative error, top-1 agreement where logits exist."""
    figures: dict = {}
    if "last_hidden_state" in expected:
        cos = token_cosines(actual["last_hidden_state"], expected["last_hidden_state"], real_mask)
        figures["min_token_cosine"] = plain_float(cos.min()) if cos.size else None
        figures["mean_token_cosine"] = plain_float(cos.mean()) if cos.size else None
    if "pooler_output" in expected:
        rel = pooled_relative_errors(actual["pooler_output"], expected["pooler_output"], real_mask)
        figures["max_pooled_rel"] = plain_float(rel.max()) if rel.size else None
    if "logits" in expected:
        agree, counted, ties = top1_agreement(actual["logits"], expected["logits"], real_mask, tie=tie)
        figures["top1_agreement"] = agree / counted if counted else None
        figures["top1_ties"] = ties
    return figures
