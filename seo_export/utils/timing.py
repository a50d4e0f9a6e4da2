"""Interleaved timing: every contender runs once per round, so machine noise hits all alike."""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Callable

#: Pause before each timed call. Runtimes keep their worker threads spinning after a call
#: (libgomp behind eager PyTorch for a few ms; ONNX Runtime unless told to stop, which
#: ``backends.ort_runner.create_session`` does), and on a 2-core machine that spin takes the
#: second core from whatever is timed next: a [2048, 768] x [768, 768] ORT MatMul timed right
#: after ``F.linear`` ran at 0.6x of torch's speed, and at 0.9x with a 10 ms pause. The
#: pause is not part of any sample.
SETTLE_S = 0.02
#: numpy's matmul (OpenBLAS) leaves its threads spinning far longer, about 2^28 cycles (~0.1 s):
#: an ONNX Runtime attention graph timed 20 ms after a 2048^3 numpy matmul ran 1.5x slower than
#: 300 ms after it. Contenders that call numpy's BLAS get this settle after them instead.
BLAS_SETTLE_S = 0.3


def interleaved_times(contenders: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1,
                      min_seconds: float = 0.0, settle_s: float = SETTLE_S,
                      settle_after: dict[str, float] | None = None, calls: int = 1,
                      warm_calls: int = 0) -> dict[str, list[float]]:
    """Seconds per call for each contender, one sample per round, contenders alternating,
    each timed call preceded by ``settle_s`` of sleep so the previous call's threads are idle,
    or by ``settle_after[previous contender]`` where that is longer.

    By default a sample is one call made after that pause: cold, as a request after an idle spell.
    With ``warm_calls`` untimed calls after the pause and a sample the mean of ``calls``
    back-to-back calls, it is warm, as an op runs between others inside a model: after 50 ms
    idle, a 10.7 ms ONNX Runtime graph took 13.5 ms on its first call here."""
    settle_after = settle_after or {}
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    start = time.perf_counter()
    done = 0
    previous = list(contenders)[-1]  # rounds follow each other: the first call follows the last
    while done < rounds or time.perf_counter() - start < min_seconds:
        for name, fn in contenders.items():
            settle = max(settle_s, settle_after.get(previous, 0.0))
            if settle > 0:
                time.sleep(settle)
            for _ in range(warm_calls):
                fn()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - t0) / calls)
            previous = name
        done += 1
    return samples


def ratio_median(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i]: a speedup from samples taken in the
    same rounds, so drift that slows both contenders of a round cancels out."""
    pairs = [n / d for n, d in zip(numerator, denominator) if d > 0]
    return statistics.median(pairs) if pairs else float("nan")


#: Rounds needed before a speedup gets a confidence interval (fewer give a meaningless bootstrap).
MIN_ROUNDS_FOR_INTERVAL = 5


def speedup_interval(baseline_s: list[float], contender_s: list[float], confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Confidence interval of ``median(baseline) / median(contender)``, the speedup the bench reports.

    A paired percentile bootstrap over rounds (``scipy.stats.bootstrap``): rounds are resampled
    whole, so each keeps its baseline and contender sample and drift common to a round stays
    paired. None with fewer than ``MIN_ROUNDS_FOR_INTERVAL`` rounds. Seeded: the same samples
    give the same interval.
    """
    import numpy as np
    from scipy import stats

    if len(baseline_s) != len(contender_s):
        raise ValueError(f"paired samples differ in length: {len(baseline_s)} and {len(contender_s)}")
    if len(baseline_s) < MIN_ROUNDS_FOR_INTERVAL or min(contender_s) <= 0:
        return None

    def ratio_of_medians(baseline, contender, axis=-1):
        return np.median(baseline, axis=axis) / np.median(contender, axis=axis)

    with warnings.catch_warnings():
        # Identical resamples (a constant ratio) make scipy warn that the data are degenerate.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap((np.asarray(baseline_s, float), np.asarray(contender_s, float)), ratio_of_medians,
                                 paired=True, vectorized=True, n_resamples=resamples, confidence_level=confidence,
                                 method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def speedup(baseline_s: list[float], contender_s: list[float]) -> dict:
    """The speedup as results record it: ``median(baseline) / median(contender)`` and its 95% interval."""
    return {"median": median(baseline_s) / median(contender_s),
            "interval_95": speedup_interval(baseline_s, contender_s)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values)
