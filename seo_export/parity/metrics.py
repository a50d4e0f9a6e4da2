"""Error metrics between a backend's output and the eager reference, split by real and padded tokens.

Everything is computed in float64 (so an FP16 output is measured exactly) and returned as
plain Python values that ``json.dumps`` accepts: no numpy scalars, no NaN (a value that
cannot be measured is ``None``).
"""

from __future__ import annotations

import math

import numpy as np

# Added to |expected| in the relative error's denominator so that an expected value of exactly 0
# gives a large finite number instead of inf/NaN. It is far below any float16/float32 error we
# could care about, so wherever |expected| is meaningful it does not change the result.
TINY = 1e-12

# Decade edges (1e-9 .. 1e1) of the absolute-error histogram kept per output. Fixed edges let
# the report sum histograms across cases; bin 0 holds errors below 1e-9 (exact zeros included),
# the last bin holds errors of 10 and more.
HIST_EDGES = tuple(10.0 ** k for k in range(-9, 2))


def plain_float(value) -> float | None:
    """A JSON-safe float: numpy scalars become Python floats, NaN and +-inf become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def region_masks(shape: tuple[int, ...], real_mask: np.ndarray | None,
                 has_seq_axis: bool | None = None) -> dict[str, np.ndarray]:
    """Boolean element masks of ``shape`` for the real-token and padded positions.

    ``real_mask`` is [batch, seq] (bool, or the 0/1 ``attention_mask``) and is broadcast over the
    trailing axes. An output whose leading axes are not [batch, seq] (``pooler_output``) is all
    real; ``has_seq_axis`` says so explicitly where shapes are ambiguous (hidden == seq).
    """
    shape = tuple(shape)
    if real_mask is None:
        real = np.ones(shape, dtype=bool)
    else:
        mask = np.asarray(real_mask) != 0
        if mask.ndim != 2:
            raise ValueError(f"real_mask must be [batch, seq], got shape {mask.shape}")
        leading_match = len(shape) >= 2 and shape[:2] == mask.shape
        if has_seq_axis is None:
            has_seq_axis = leading_match
        if has_seq_axis and not leading_match:
            raise ValueError(f"real_mask {mask.shape} does not match the [batch, seq] axes of an output {shape}")
        if has_seq_axis:
            real = np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - 2)), shape)
        else:
            real = np.ones(shape, dtype=bool)
    return {"real": real, "padded": ~real}


def abs_error(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64))


def relative_error(actual: np.ndarray, expected: np.ndarray, tiny: float = TINY) -> np.ndarray:
    """|a - e| / (|e| + tiny), elementwise."""
    return abs_error(actual, expected) / (np.abs(np.asarray(expected, dtype=np.float64)) + tiny)


def required_atol(actual: np.ndarray, expected: np.ndarray, rtol: float) -> float:
    """Smallest atol with |a - e| <= atol + rtol * |e| everywhere (0 for empty input)."""
    if np.size(actual) == 0:
        return 0.0
    excess = abs_error(actual, expected) - rtol * np.abs(np.asarray(expected, dtype=np.float64))
    return max(float(excess.max()), 0.0)


def cosine_similarity(actual: np.ndarray, expected: np.ndarray) -> float:
    """Cosine of the flattened arrays; two all-zero arrays count as identical (1.0)."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(e)
    if norms == 0.0:
        return 1.0 if not a.any() and not e.any() else 0.0
    return float(np.dot(a, e) / norms)


def log_histogram(errors: np.ndarray) -> list[int]:
    """Counts of ``errors`` in the decade bins of ``HIST_EDGES`` (len(HIST_EDGES) + 1 bins)."""
    bins = np.searchsorted(np.asarray(HIST_EDGES), np.ravel(errors), side="right")
    return [int(n) for n in np.bincount(bins, minlength=len(HIST_EDGES) + 1)]


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"max": None, "mean": None, "median": None, "p99": None}
    return {
        "max": plain_float(values.max()),
        "mean": plain_float(values.mean()),
        "median": plain_float(np.median(values)),
        "p99": plain_float(np.percentile(values, 99)),
    }


def _region_metrics(actual: np.ndarray, expected: np.ndarray, rtol: float, tiny: float) -> dict:
    # Error statistics cover the pairs where both sides are finite; NaN/Inf are counted instead
    # (and fail every tolerance rule), so one NaN does not hide how close the rest is.
    finite = np.isfinite(actual) & np.isfinite(expected)
    a, e = actual[finite], expected[finite]
    abs_err = abs_error(a, e)
    return {
        "count": int(actual.size),
        "nan": int(np.isnan(actual).sum()),
        "inf": int(np.isinf(actual).sum()),
        "reference_nonfinite": int((~np.isfinite(expected)).sum()),
        "abs": _stats(abs_err),
        "rel": _stats(relative_error(a, e, tiny)),
        "cosine": plain_float(cosine_similarity(a, e)) if a.size else None,
        "passing_tolerance": {
            "atol_at_rtol_0": plain_float(abs_err.max()) if a.size else None,
            "rtol": float(rtol),
            "atol": plain_float(required_atol(a, e, rtol)) if a.size else None,
        },
        "abs_histogram": log_histogram(abs_err),
    }


def compare(actual: np.ndarray, expected: np.ndarray, real_mask: np.ndarray | None = None, *,
            rtol: float = 1e-4, tiny: float = TINY, has_seq_axis: bool | None = None) -> dict:
    """Metrics of ``actual`` against ``expected``, for real-token and padded positions separately.

    ``passing_tolerance`` answers "which tolerance would have passed": ``atol_at_rtol_0`` is the
    max abs error, ``atol`` the smallest atol that passes together with the given ``rtol``.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"output shape {a.shape} does not match the reference shape {e.shape}")
    masks = region_masks(a.shape, real_mask, has_seq_axis)
    return {
        "shape": [int(n) for n in a.shape],
        "dtype": str(np.asarray(actual).dtype),
        **{name: _region_metrics(a[mask], e[mask], rtol, tiny) for name, mask in masks.items()},
    }
