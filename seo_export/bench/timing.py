"""Interleaved timing: every contender runs once per round, so machine noise hits all alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable

#: Pause before each timed call. Runtimes keep their worker threads spinning after a call
#: (libgomp behind eager PyTorch for a few ms; ONNX Runtime unless told to stop, which
#: ``backends.ort_runner.create_session`` does), and on a 2-core machine that spin takes the
#: second core from whatever is timed next: a [2048, 768] x [768, 768] ORT MatMul timed right
#: after ``F.linear`` ran at 0.6x of torch's speed, and at 0.9x with a 10 ms pause. The
#: pause is not part of any sample.
SETTLE_S = 0.02


def interleaved_times(contenders: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1,
                      min_seconds: float = 0.0, settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """Seconds per call for each contender, one sample per round, contenders alternating,
    each timed call preceded by ``settle_s`` of sleep so the previous call's threads are idle."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    start = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - start < min_seconds:
        for name, fn in contenders.items():
            if settle_s > 0:
                time.sleep(settle_s)
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        done += 1
    return samples


def ratio_median(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i]: a speedup from samples taken in the
    same rounds, so drift that slows both contenders of a round cancels out."""
    pairs = [n / d for n, d in zip(numerator, denominator) if d > 0]
    return statistics.median(pairs) if pairs else float("nan")


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
