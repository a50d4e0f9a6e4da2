"""Interleaved timing: every contender runs once per round, so machine noise hits all alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_times(contenders: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1,
                      min_seconds: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call for each contender, one sample per round, contenders alternating."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    start = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - start < min_seconds:
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        done += 1
    return samples


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
