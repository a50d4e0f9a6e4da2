"""Shared by the device check's stages: clocks, the time budget, atomic JSON, and timing contenders.

A contender is a function of no arguments that runs one call on the GPU (on the CPU in a dry run).
``time_contenders`` warms each up once (compiles, checks memory: an out-of-memory error is recorded
as a skip, not raised), then times them in interleaved rounds, so drift on the machine hits all alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

#: Dense BF16 (= FP16) tensor-core peak of the H200 the goals are stated against, TFLOP/s.
PEAK_TFLOPS = 790.0


def now() -> float:
    return time.perf_counter()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip()


def atomic_write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Deadline:
    """The script's budget. ``reserve`` keeps seconds back for the stages still to come."""

    def __init__(self, seconds: float, reserve: float = 0.0, start: float | None = None):
        self.start = now() if start is None else start
        self.seconds, self.reserve = seconds, reserve

    def left(self) -> float:
        return self.seconds - self.reserve - (now() - self.start)

    def keeping(self, reserve: float) -> "Deadline":
        """The same budget with ``reserve`` more seconds kept back (for the stages after this one)."""
        return Deadline(self.seconds, self.reserve + reserve, self.start)


def synchronize(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def mean_ms(torch, fn: Callable, iters: int, device: str) -> float:
    """Milliseconds per call over ``iters`` back-to-back calls: CUDA events on a GPU, the wall clock otherwise."""
    if device == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / iters
    start = now()
    for _ in range(iters):
        fn()
    return (now() - start) * 1e3 / iters


def graphed(torch, fn: Callable) -> Callable:
    """``fn`` replayed from a CUDA graph, without Python's launch overhead: captured on the first call,
    after one eager call (which compiles the Triton kernels outside the capture). Returns its output."""
    state = {}

    def call():
        if "graph" not in state:
            fn()
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                state["out"] = fn()
            state["graph"] = graph
        state["graph"].replay()
        return state["out"]

    return call


def free_bytes(torch, device: str) -> float:
    return torch.cuda.mem_get_info()[0] if device == "cuda" else float("inf")


@contextlib.contextmanager
def size_attempt(torch, device: str, size: dict, report: Callable[[], None]):
    """One size of a timing stage: an error is recorded in ``size`` and the stage goes on with the
    next size; either way the GPU's cached blocks are freed and the progress is written."""
    try:
        yield
    except Exception as exc:
        size["error"] = first_line(exc)
        size["traceback"] = traceback.format_exc(limit=4)
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
        report()


def time_contenders(torch, runs: dict[str, Callable], entries: dict[str, dict], deadline: Deadline, rounds: int,
                    device: str, warmup_needs: dict[str, float] | None = None,
                    on_output: Callable[[str, object], None] | None = None, target_s: float = 0.05) -> dict:
    """Warm up, then time ``runs`` interleaved; results go into ``entries[name]`` (created as needed).

    A contender is skipped before its warm-up when less than ``warmup_needs[name]`` (default 10) seconds
    are left, and dropped when its warm-up runs out of memory or raises. ``on_output(name, out)`` sees
    each warm-up's output. Each round calls a contender enough times to take about ``target_s``.
    Returns {"rounds_done": n, "rounds_cut_short": bool}.
    """
    runs = dict(runs)
    for name in list(runs):
        needed = (warmup_needs or {}).get(name, 10.0)
        entry = entries.setdefault(name, {})
        if deadline.left() < needed:
            entry["skipped"] = f"out of time before warm-up (needs ~{needed:.0f} s)"
            del runs[name]
            continue
        try:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if device == "cuda" else 0
            start = now()
            out = runs[name]()
            synchronize(torch, device)
            entry["warmup_s"] = round(now() - start, 3)
            if device == "cuda":
                entry["peak_extra_gib"] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)
            if on_output is not None:
                on_output(name, out)
            del out
        except torch.cuda.OutOfMemoryError as exc:
            entry["skipped"] = f"out of memory: {first_line(exc)}"
            del runs[name]
            torch.cuda.empty_cache()
        except Exception as exc:
            entry["error"] = first_line(exc)
            del runs[name]

    times = {name: [] for name in runs}
    per_call = {name: max(entries[name].get("warmup_s", 0.01), 1e-5) for name in runs}
    done, cut_short = 0, False
    for _ in range(rounds):
        # A round costs every contender's call time; leave 5 s for the rest of the stage.
        if deadline.left() < 5 + sum(per_call.values()):
            cut_short = True
            break
        for name, fn in runs.items():
            iters = max(1, min(50, int(target_s / per_call[name])))
            ms = mean_ms(torch, fn, iters, device)
            times[name].append(ms)
            per_call[name] = max(ms / 1000, 1e-5)
        done += 1
    for name, samples in times.items():
        if samples:
            median = statistics.median(samples)
            entries[name].update(ms_median=round(median, 4), ms_min=round(min(samples), 4),
                                 ms_samples=[round(s, 4) for s in samples])
    runs.clear()  # drop the closures over the inputs
    return {"rounds_done": done, "rounds_cut_short": cut_short}


def tflops(flops: float, ms: float | None) -> float | None:
    return None if not ms else round(flops / (ms * 1e-3) / 1e12, 2)
