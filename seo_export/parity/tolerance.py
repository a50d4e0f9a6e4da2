"""Pass/fail rules: FP32 by atol/rtol, FP16 relative to what eager PyTorch itself loses in FP16.

Rules judge real-token positions (padded positions are reported by ``metrics`` but carry no
meaning downstream); a NaN or Inf anywhere in the output, padding included, always fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from seo_export.parity.metrics import abs_error, plain_float, region_masks, required_atol

FP32_ATOL = 1e-4
FP32_RTOL = 1e-4
# FlashAttention's tests: the fast kernel may be at most twice as wrong as the eager model in the
# same precision, plus a floor so a near-exact baseline does not demand bit-exactness.
FP16_FACTOR = 2.0
FP16_FLOOR = 1e-3

FP32_RULE = "fp32-atol-rtol"
FP16_RULE = "fp16-vs-eager-fp16"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rule: str
    threshold: float | None
    measured: float | None
    baseline: float | None
    reason: str

    @classmethod
    def from_dict(cls, data: dict) -> "Verdict":
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def to_dict(self) -> dict:
        return {**asdict(self), "threshold": plain_float(self.threshold),
                "measured": plain_float(self.measured), "baseline": plain_float(self.baseline)}

    @property
    def margin(self) -> float:
        """measured / threshold: above 1 fails; used to pick the worst of several verdicts."""
        if self.measured is None or self.threshold is None or not math.isfinite(self.measured):
            return math.inf
        return self.measured / self.threshold if self.threshold > 0 else (math.inf if self.measured > 0 else 0.0)


def _nonfinite_reason(nonfinite: int) -> str:
    return f"output has {nonfinite} NaN/Inf value(s)"


def fp32_rule(needed_atol: float, *, nonfinite: int = 0, atol: float = FP32_ATOL, rtol: float = FP32_RTOL) -> Verdict:
    """Verdict from the smallest atol that passes at ``rtol`` (see ``metrics.required_atol``)."""
    bound = f"atol {atol:.3g} + rtol {rtol:.3g} * |expected|"
    if nonfinite:
        return Verdict(False, FP32_RULE, atol, needed_atol, None, _nonfinite_reason(nonfinite))
    passed = needed_atol <= atol
    relation = "within" if passed else "exceeds"
    reason = f"error {relation} {bound}; smallest passing atol at this rtol: {needed_atol:.3g}"
    return Verdict(passed, FP32_RULE, atol, needed_atol, None, reason)


def fp16_rule(measured: float, baseline: float, *, nonfinite: int = 0,
              factor: float = FP16_FACTOR, floor: float = FP16_FLOOR) -> Verdict:
    """Pass iff ``measured <= factor * baseline + floor``.

    ``measured``: max abs error of the FP16 backend against eager FP32; ``baseline``: max abs
    error of eager FP16 against eager FP32 on the same input.
    """
    if not math.isfinite(baseline):
        return Verdict(False, FP16_RULE, None, measured, baseline,
                       "eager FP16 baseline is not finite, so the FP16 bar is undefined")
    threshold = factor * baseline + floor
    if nonfinite:
        return Verdict(False, FP16_RULE, threshold, measured, baseline, _nonfinite_reason(nonfinite))
    passed = measured <= threshold
    relation = "<=" if passed else ">"
    reason = (f"max abs err {measured:.3g} {relation} {factor:g} x eager-fp16 err {baseline:.3g}"
              f" + {floor:.3g} = {threshold:.3g}")
    return Verdict(passed, FP16_RULE, threshold, measured, baseline, reason)


def _real(array: np.ndarray, real_mask, has_seq_axis) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    return array[region_masks(array.shape, real_mask, has_seq_axis)["real"]]


def _nonfinite(array: np.ndarray) -> int:
    return int((~np.isfinite(np.asarray(array))).sum())


def _check_shapes(*arrays: np.ndarray) -> None:
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"arrays to compare have different shapes: {sorted(shapes)}")


def _broken_reference(rule: str, expected: np.ndarray) -> Verdict | None:
    """A failing verdict when the eager reference itself is not finite: nothing to compare against."""
    count = _nonfinite(expected)
    if not count:
        return None
    return Verdict(False, rule, None, None, None, f"eager FP32 reference has {count} NaN/Inf value(s)")


def check_fp32(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
               atol: float = FP32_ATOL, rtol: float = FP32_RTOL, has_seq_axis: bool | None = None) -> Verdict:
    """Pass iff |a - e| <= atol + rtol * |e| at every real position and the output is finite."""
    _check_shapes(actual, expected)
    broken = _broken_reference(FP32_RULE, expected)
    if broken:
        return broken
    a, e = _real(actual, real_mask, has_seq_axis), _real(expected, real_mask, has_seq_axis)
    nonfinite = _nonfinite(actual)
    needed = math.nan if nonfinite else required_atol(a, e, rtol)
    return fp32_rule(needed, nonfinite=nonfinite, atol=atol, rtol=rtol)


def check_fp16(actual: np.ndarray, expected: np.ndarray, baseline: np.ndarray, real_mask: np.ndarray | None = None,
               *, factor: float = FP16_FACTOR, floor: float = FP16_FLOOR,
               has_seq_axis: bool | None = None) -> Verdict:
    """FP16 rule on arrays: ``actual`` (the FP16 backend) and ``baseline`` (eager FP16), both
    measured against ``expected`` (eager FP32) on real positions."""
    _check_shapes(actual, expected, baseline)
    broken = _broken_reference(FP16_RULE, expected)
    if broken:
        return broken

    def max_err(x: np.ndarray) -> float:
        err = abs_error(_real(x, real_mask, has_seq_axis), _real(expected, real_mask, has_seq_axis))
        return float(err.max()) if err.size else 0.0

    return fp16_rule(max_err(actual), max_err(baseline), nonfinite=_nonfinite(actual),
                     factor=factor, floor=floor)


def combine(verdicts: dict[str, Verdict]) -> Verdict:
    """One verdict for several outputs: passes iff all pass; reports the worst output."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    # Failures first, then the largest measured/threshold ratio.
    name, worst = max(verdicts.items(), key=lambda item: (not item[1].passed, item[1].margin))
    passed = all(v.passed for v in verdicts.values())
    return Verdict(passed, worst.rule, worst.threshold, worst.measured, worst.baseline, f"{name}: {worst.reason}")
