"""The ``seo-export bench`` engine: variants x batch x seq, backends timed side by side.

For each selected variant the model is built once (seeded weights), exported to ONNX once
into a temporary cache, and a runner is made per backend (eager PyTorch, ONNX Runtime, and
TensorRT where it is available). For every batch x seq point the backends are warmed up and
then timed *interleaved* (one call of each per round, each after a short pause, see
``timing.interleaved_times``), so a noisy, shared machine slows all of them alike and the
speedup against eager PyTorch is a ratio from the same run. Each point's peak memory is
measured per backend in a fresh subprocess (``peak_rss_growth_mb``, over
``memory.peak_memory_mb``): the growth of resident memory during the first full-size call,
after the model is loaded and has run one tiny input (which pages in code and starts thread
pools). That is what a call of that size needs beyond the loaded model, ONNX Runtime's arena
included (a full-size warm-up would hide the arena, which keeps its memory between calls).
TensorRT memory lives on the GPU, which an RSS probe cannot see, so it is not measured (null);
nor is ``torch-triton``'s (the GPU, or Triton's interpreter, whose memory says nothing about the kernels).

Speedups compare like with like. TensorRT runs the FP16 export, so where it is benched (on a
GPU) eager PyTorch also runs in FP16 (backend ``torch-fp16``, a copy of the model cast to
half, timed in the same interleaved rounds), and every point reports its speedup against
eager FP32 (``speedup_vs_torch``) and eager FP16 (``speedup_vs_torch_fp16``); an FP16 backend's
headline is the FP16 one. On a CPU eager FP16 is not timed: PyTorch's CPU half kernels are
slow fallbacks (many upcast to FP32 and back), so a ratio against them would flatter any
backend, and no FP16 backend runs there (``ort`` runs the FP32 export). An FP16 backend on a
CPU would be compared against eager FP32 only, which its ``precision`` makes visible.

``torch-triton`` is eager PyTorch with the seo ops on the Triton kernels (a copy of the model): in
FP16 on a GPU, so its baseline is ``torch-fp16`` as TensorRT's is; in FP32 on a CPU, where it runs
only under ``TRITON_INTERPRET=1`` (Triton's interpreter: a test mode, not a speed).

What could not be run is skipped with a reason instead of failing the sweep: TensorRT where
it or a GPU is missing, torch-triton where Triton or a GPU (or its interpreter) is missing, and
points longer than a learned positional table. Everything is returned as a ``bench`` report
(``seo_export.parity.report.bench_report``); the settings and the skips are recorded in its
``environment`` (``bench`` and ``skipped``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from seo_export.bench.memory import peak_memory_mb
from seo_export.errors import MissingDependencyError, UsageError
from seo_export.models.config import ATTENTION_TYPES, POSITIONAL_ENCODING_TYPES, TransformerConfig
from seo_export.utils.environment import collect_environment, load_average
from seo_export.utils.timing import SETTLE_S, interleaved_times, median, speedup_interval

TORCH_TRITON = "torch-triton"  # eager PyTorch with the seo ops on the Triton kernels
BACKENDS = ("torch", TORCH_TRITON, "ort", "ort-int8", "trt")
EAGER_FP16 = "torch-fp16"  # eager PyTorch in half precision: the baseline of FP16 backends
#: What each timed backend computes in: trt builds the FP16 export, ort runs the FP32 one, ort-int8
#: the FP32 one with its linear layers quantized by ONNX Runtime (export.quantize); torch-triton
#: depends on its device (``precision_of``).
PRECISION = {"torch": "fp32", EAGER_FP16: "fp16", "ort": "fp32", "ort-int8": "int8", "trt": "fp16"}
#: Eager PyTorch's threads: what these backends' ``threads`` records.
TORCH_THREADED = ("torch", EAGER_FP16, TORCH_TRITON)
ORT_BACKENDS = ("ort", "ort-int8")
#: Every attention kind x positional encoding, non-causal: what ``--all`` benches.
ALL_VARIANTS = tuple((a, p, False) for a in ATTENTION_TYPES for p in POSITIONAL_ENCODING_TYPES)

#: The memory probes first run one tiny input, so code paging and thread-pool start-up are not counted.
PROBE_WARMUP_SEQ = 8

Progress = Callable[[str, int, int], None]  # (message, steps done, steps in all)


@dataclass(frozen=True)
class Variant:
    attention: str
    positional: str
    causal: bool = False

    @property
    def label(self) -> str:
        return f"{self.attention}/{self.positional}" + ("/causal" if self.causal else "")

    @property
    def file_stem(self) -> str:
        return self.label.replace("/", "-")

    def as_dict(self) -> dict:
        return {"attention": self.attention, "positional": self.positional, "causal": self.causal}


@dataclass
class SweepSettings:
    """What to measure. ``base_config`` gives every field but the variant's three."""

    variants: Sequence[Variant]
    base_config: TransformerConfig = field(default_factory=TransformerConfig)
    backends: Sequence[str] = ("torch", "ort")
    batches: Sequence[int] = (1,)
    seqs: Sequence[int] = (512,)
    warmup: int = 2
    iterations: int = 10
    seed: int = 0
    threads: int | None = None  # None: torch's current setting, given to ORT's intra-op pool too
    memory: bool = True
    memory_timeout_s: float = 900.0
    #: Given inputs (e.g. tokenized text) timed instead of seeded ids: one point, batches and seqs their shape.
    feeds: dict[str, np.ndarray] | None = None


@dataclass
class SweepOutcome:
    report: dict
    skipped: list[dict]  # {"backend" or "variant"/"batch"/"seq", "reason"}
    settings: dict  # what environment["bench"] records


# ----------------------------------------------------------------------------- pieces

def variant_config(base: TransformerConfig, variant: Variant) -> TransformerConfig:
    """The benchmarked model: ``base`` with the variant's kinds and no dropout (eval anyway)."""
    return base.replace(attention_type=variant.attention, positional_encoding_type=variant.positional,
                        use_causal_mask=variant.causal, dropout_rate=0.0, attention_dropout=0.0)


def bench_inputs(batch: int, seq: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded token ids with every position real (padding does not change these models' cost)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, max(vocab_size, 2), size=(batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def trt_unavailable_reason() -> str | None:
    """None where TensorRT engines can be built and run here, else the one-line reason."""
    from seo_export.backends.tensorrt.loader import load_tensorrt

    try:
        load_tensorrt("benchmarking with TensorRT")
    except MissingDependencyError as exc:
        return str(exc)
    return None


def accelerator_device() -> str:
    """Eager PyTorch runs where the other backends do: CUDA when a GPU is visible."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def triton_device() -> str:
    """Where torch-triton runs: 'cuda', or 'cpu' under TRITON_INTERPRET=1 (see backends.torch_triton)."""
    from seo_export.backends.torch_triton import triton_device as device

    return device()


def precision_of(name: str) -> str:
    """What a benched backend computes in; torch-triton: FP16 on a GPU, FP32 in Triton's interpreter."""
    if name == TORCH_TRITON:
        return "fp16" if triton_device() == "cuda" else "fp32"
    return PRECISION[name]


def triton_runner(model):
    """torch-triton on a copy of the model (the runner casts its model in place), in ``precision_of``."""
    import torch

    from seo_export.backends.torch_triton import TorchTritonRunner

    dtype = torch.float16 if precision_of(TORCH_TRITON) == "fp16" else torch.float32
    return TorchTritonRunner(copy.deepcopy(model), dtype=dtype, device=triton_device())


def eager_runners(model, device: str, fp16: bool) -> dict:
    """Eager PyTorch in FP32 and, with ``fp16``, in FP16 as well: on a copy of the model, since
    TorchRunner casts its model in place."""
    import torch

    from seo_export.backends.torch_runner import TorchRunner

    runners = {"torch": TorchRunner(model, device=device)}
    if fp16:
        runners[EAGER_FP16] = TorchRunner(copy.deepcopy(model), dtype=torch.float16, device=device)
    return runners


def eager_fp16_skip_reason(backends: Sequence[str], device: str) -> str | None:
    """None when eager FP16 is timed as a baseline, else why not (see the module docstring)."""
    if device != "cuda":
        return ("not timed on a CPU: PyTorch's CPU FP16 kernels are slow fallbacks, not a baseline, "
                "and no FP16 backend runs there")
    if not any(precision_of(name) == "fp16" for name in backends):
        return "not timed: no FP16 backend was benched"
    if "torch" not in backends:
        return "not timed: eager PyTorch (torch) was not benched"
    return None


def point_skip_reason(config: TransformerConfig, seq: int) -> str | None:
    if config.positional_encoding_type == "learned" and seq > config.positional_encoding_max_len:
        return (f"seq {seq} exceeds the learned positional table "
                f"(positional_encoding_max_len={config.positional_encoding_max_len})")
    return None


def peak_rss_growth_mb(setup: str, kwargs: dict, timeout: float = 900.0) -> float | None:
    """Peak RSS growth of one call made by ``getattr(this module, setup)(**kwargs)``, measured by
    ``memory.peak_memory_mb`` in a fresh interpreter; None when it could not be measured."""
    return peak_memory_mb(__name__, setup, kwargs, timeout, warmup=False)  # setups warm up on [1, 8]


# Probe setups: run in a fresh interpreter by ``peak_rss_growth_mb``; each returns one call.
def probe_torch(config: dict, seed: int, batch: int, seq: int, threads: int, device: str = "cpu"):
    import torch

    from seo_export.backends.torch_runner import TorchRunner
    from seo_export.models.build import build_model

    torch.set_num_threads(threads)
    cfg = TransformerConfig.from_dict(config)
    runner = TorchRunner(build_model(cfg, seed), device=device).activate()
    feeds = bench_inputs(batch, seq, cfg.vocab_size, seed)
    runner.infer(bench_inputs(1, PROBE_WARMUP_SEQ, cfg.vocab_size, seed))  # page in kernels, start thread pools
    return lambda: runner.infer(feeds)


def probe_ort(path: str, vocab_size: int, seed: int, batch: int, seq: int, threads: int):
    from seo_export.backends.ort_runner import OrtRunner

    runner = OrtRunner(path, intra_op_threads=threads).activate()
    feeds = bench_inputs(batch, seq, vocab_size, seed)
    runner.infer(bench_inputs(1, PROBE_WARMUP_SEQ, vocab_size, seed))
    return lambda: runner.infer(feeds)


def ort_threads(runner) -> int | None:
    """The intra-op thread count an ORT session was given (0 means ORT's own default)."""
    value = runner.session.get_session_options().intra_op_num_threads
    return value or None


# ----------------------------------------------------------------------------- the sweep

def check_settings(settings: SweepSettings) -> None:
    unknown = [b for b in settings.backends if b not in BACKENDS]
    if unknown:
        raise UsageError(f"unknown backend {unknown[0]!r}; valid: {', '.join(BACKENDS)}")
    if not settings.backends:
        raise UsageError("no backend to benchmark; pass --backends torch,ort,trt or a subset")
    if not settings.variants:
        raise UsageError("no variant to benchmark")
    for name, values in (("batch", settings.batches), ("seq", settings.seqs)):
        if not values or any(int(v) <= 0 for v in values):
            raise UsageError(f"--{name} needs positive integers, got {list(values)}")
    if settings.iterations <= 0 or settings.warmup < 0:
        raise UsageError("--iterations must be > 0 and --warmup >= 0")
    if settings.feeds is not None and [list(settings.batches), list(settings.seqs)] != [
            [n] for n in settings.feeds["input_ids"].shape]:
        raise UsageError(f"given inputs of shape {tuple(settings.feeds['input_ids'].shape)} are one point: "
                         f"batch and seq must be theirs, got {list(settings.batches)} and {list(settings.seqs)}")
    for variant in settings.variants:  # ConfigError (one line) for e.g. causal sparse, before any work
        variant_config(settings.base_config, variant)


def unavailable_reason(name: str) -> str | None:
    """None where backend ``name`` runs here, else the one-line reason; only trt and torch-triton can be missing."""
    if name == "trt":
        return trt_unavailable_reason()
    if name == TORCH_TRITON:
        from seo_export.backends.torch_triton import triton_unavailable_reason

        return triton_unavailable_reason()
    return None


def usable_backends(requested: Sequence[str]) -> tuple[list[str], list[dict]]:
    """(backends to run, skipped backends with reasons)."""
    backends, skipped = [], []
    for name in dict.fromkeys(requested):
        reason = unavailable_reason(name)
        if reason:
            skipped.append({"backend": name, "reason": reason})
        else:
            backends.append(name)
    if not backends:
        raise UsageError("nothing to benchmark: " + "; ".join(f"{s['backend']} skipped: {s['reason']}"
                                                              for s in skipped))
    return backends, skipped


def _trt_runner(settings: SweepSettings, model, directory: Path, variant: Variant):
    """Export the FP16 graph TensorRT builds as it is, build an engine covering every point, load it."""
    from seo_export.backends.tensorrt import TrtRunner, build_engine
    from seo_export.backends.tensorrt.profiles import DimRange, Profile
    from seo_export.export import export_onnx

    path = directory / f"{variant.file_stem}-fp16.onnx"
    export_onnx(model, path, precision="fp16")
    batches, seqs = sorted(settings.batches), sorted(settings.seqs)
    profile = Profile(batch=DimRange(batches[0], batches[-1], batches[-1]), seq=DimRange(seqs[0], seqs[-1], seqs[-1]))
    engine = directory / f"{variant.file_stem}-fp16.engine"
    build_engine(path, engine, [profile])
    return TrtRunner(engine)


def run_sweep(settings: SweepSettings, progress: Progress | None = None,
              workdir: str | os.PathLike | None = None) -> SweepOutcome:
    """Measure every variant x batch x seq point; see the module docstring.

    ``progress(message, done, total)`` is called as steps start and end. Exported files go to
    ``workdir`` when given (and stay there), else to a temporary directory where each variant's
    files are removed once its points are measured.
    """
    import torch

    from seo_export.backends.ort_runner import OrtRunner
    from seo_export.export import export_onnx
    from seo_export.export.quantize import quantize_file
    from seo_export.models.build import build_model
    from seo_export.parity.report import bench_report

    check_settings(settings)
    backends, skipped = usable_backends(settings.backends)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    threads = torch.get_num_threads()
    device = accelerator_device()
    fp16_reason = eager_fp16_skip_reason(backends, device)
    points = [(b, s) for b in settings.batches for s in settings.seqs]
    total = len(settings.variants) * (1 + len(points))
    done = 0

    def step(message: str, advance: int = 0) -> None:
        nonlocal done
        done += advance
        if progress is not None:
            progress(message, done, total)

    results: list[dict] = []
    ort_intra = None
    load_before = load_average()
    with contextlib.ExitStack() as stack:
        directory = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="seo-bench-")))
        for variant in settings.variants:
            config = variant_config(settings.base_config, variant)
            model = build_model(config, settings.seed)
            onnx_paths = {"ort": directory / f"{variant.file_stem}.onnx",
                          "ort-int8": directory / f"{variant.file_stem}-int8.onnx"}
            step(f"{variant.label}: exporting to ONNX")
            if any(name in backends for name in ORT_BACKENDS):
                export_onnx(model, onnx_paths["ort"], precision="fp32")
            if "ort-int8" in backends:
                quantize_file(onnx_paths["ort"], onnx_paths["ort-int8"])  # the FP32 export, not traced again
            runners = {}
            for name in backends:
                if name == "torch":
                    runners.update(eager_runners(model, device, fp16=fp16_reason is None))
                elif name == TORCH_TRITON:
                    runners[name] = triton_runner(model)
                elif name in ORT_BACKENDS:
                    runners[name] = OrtRunner(onnx_paths[name], intra_op_threads=threads)
                else:
                    runners[name] = _trt_runner(settings, model, directory, variant)
            step(f"{variant.label}: exported", advance=1)
            with contextlib.ExitStack() as active:
                for runner in runners.values():
                    active.enter_context(runner)
                if "ort" in runners:
                    ort_intra = ort_threads(runners["ort"])
                for batch, seq in points:
                    reason = point_skip_reason(config, seq)
                    if reason:
                        skipped.append({"variant": variant.label, "batch": batch, "seq": seq, "reason": reason})
                        step(f"{variant.label} b{batch} s{seq}: skipped", advance=1)
                        continue
                    step(f"{variant.label} b{batch} s{seq}: timing {', '.join(runners)}")
                    results += _measure_point(settings, variant, config, runners, batch, seq, onnx_paths,
                                              threads, ort_intra, device)
                    step(f"{variant.label} b{batch} s{seq}: done", advance=1)
            del model, runners
            if not workdir:  # a full-size model is ~0.5 GB per file: keep one variant's files at a time
                for path in directory.glob(f"{variant.file_stem}*"):
                    path.unlink()

    bench_settings = {
        "warmup": settings.warmup,
        "iterations": settings.iterations,
        "seed": settings.seed,
        "backends": backends,
        "torch_device": device,
        "eager_fp16": fp16_reason or (f"timed as {EAGER_FP16}, the baseline of FP16 backends "
                                      "(speedup_vs_torch_fp16, their headline)"),
        "timing": (f"interleaved: one call of each backend per round, each after a {SETTLE_S * 1e3:.0f} ms pause "
                   "that lets the previous call's threads stop spinning; speedup_vs_torch = torch p50 / backend p50, "
                   "speedup_vs_torch_ci95 its 95% paired bootstrap interval over the rounds; speedup_vs_torch_fp16 "
                   "and its interval likewise against torch-fp16 where that is timed"),
        "peak_mb": ("peak RSS growth during the first full-size call in a fresh process (memory.peak_memory_mb: "
                    f"after the model is loaded and has run one [1, {PROBE_WARMUP_SEQ}] input): what a call of that "
                    "size needs beyond the loaded model, ONNX Runtime's arena included; null for TensorRT (GPU memory) "
                    "and torch-triton")
        if settings.memory else "not measured",
        # The machine is shared: its load during the run says how much to trust absolute times.
        "load_average_1min": {"start": load_before, "end": load_average()},
        "inputs": ("seeded random ids, every position real" if settings.feeds is None else
                   f"given ids [{', '.join(map(str, settings.feeds['input_ids'].shape))}], "
                   f"{int(settings.feeds['attention_mask'].sum())} real tokens; the peak-memory probe runs seeded "
                   "ids of that shape"),
        "model": {k: v for k, v in variant_config(settings.base_config, settings.variants[0]).to_dict().items()
                  if k not in ("attention_type", "positional_encoding_type", "use_causal_mask")},
    }
    environment = collect_environment({"ort_intra_op": ort_intra} if ort_intra else None)
    environment["bench"] = bench_settings
    environment["skipped"] = skipped
    return SweepOutcome(bench_report(results, environment=environment), skipped, bench_settings)


def _measure_point(settings: SweepSettings, variant: Variant, config: TransformerConfig, runners: dict,
                   batch: int, seq: int, onnx_paths: dict[str, Path], threads: int, ort_intra: int | None,
                   device: str) -> list[dict]:
    from seo_export.parity.report import bench_result

    feeds = settings.feeds if settings.feeds is not None else bench_inputs(batch, seq, config.vocab_size, settings.seed)
    last: dict[str, dict] = {}  # each backend's outputs from its last timed call, for the INT8 figures
    contenders = {name: (lambda n=name, r=runner: last.__setitem__(n, r.infer(feeds)))
                  for name, runner in runners.items()}
    samples = interleaved_times(contenders, rounds=settings.iterations, warmup=settings.warmup)
    accuracy = int8_accuracy(last, feeds)
    results = []
    for name, times in samples.items():
        speedup, interval = speedup_against("torch", name, samples)
        speedup_fp16, interval_fp16 = speedup_against(EAGER_FP16, name, samples)
        peak = None
        if settings.memory and name in ("torch", *ORT_BACKENDS):
            peak = _probe(name, config, settings, batch, seq, onnx_paths.get(name), threads, device)
        backend_threads = threads if name in TORCH_THREADED else ort_intra if name in ORT_BACKENDS else None
        results.append(bench_result(variant.as_dict(), name, batch, seq, times, speedup_vs_torch=speedup,
                                    speedup_ci95=interval, speedup_vs_torch_fp16=speedup_fp16,
                                    speedup_fp16_ci95=interval_fp16, precision=precision_of(name), peak_mb=peak,
                                    threads=backend_threads, accuracy=accuracy if name == "ort-int8" else None))
    return results


def int8_accuracy(outputs: dict[str, dict], feeds: dict[str, np.ndarray]) -> dict | None:
    """The INT8 rule's figures (parity.quantized) for ort-int8 against eager FP32, from their outputs
    on the timed inputs; None unless both were benched."""
    if "ort-int8" not in outputs or "torch" not in outputs:
        return None
    from seo_export.parity.quantized import int8_figures

    expected, actual = outputs["torch"], outputs["ort-int8"]
    return int8_figures(actual, {k: v for k, v in expected.items() if k in actual},
                        feeds["attention_mask"].astype(bool))


def speedup_against(baseline: str, name: str, samples: dict[str, list[float]]):
    """(baseline p50 / ``name`` p50, its 95% interval) from one interleaved run; (None, None) when
    ``baseline`` was not timed. A backend against itself is 1.0 with no interval."""
    if baseline not in samples or median(samples[name]) <= 0:
        return None, None
    speedup = median(samples[baseline]) / median(samples[name])
    return speedup, (None if name == baseline else speedup_interval(samples[baseline], samples[name]))


def _probe(name: str, config: TransformerConfig, settings: SweepSettings, batch: int, seq: int, onnx_path: Path,
           threads: int, device: str) -> float | None:
    if name == "torch":
        kwargs = {"config": config.to_dict(), "seed": settings.seed, "batch": batch, "seq": seq,
                  "threads": threads, "device": device}
        return peak_rss_growth_mb("probe_torch", kwargs, timeout=settings.memory_timeout_s)
    kwargs = {"path": str(onnx_path), "vocab_size": config.vocab_size, "seed": settings.seed, "batch": batch,
              "seq": seq, "threads": threads}
    return peak_rss_growth_mb("probe_ort", kwargs, timeout=settings.memory_timeout_s)


def parse_variants(attention: Sequence[str], positional: Sequence[str], causal: bool) -> list[Variant]:
    """The cartesian product of the given kinds (each validated)."""
    for value, valid, what in ((attention, ATTENTION_TYPES, "attention"),
                               (positional, POSITIONAL_ENCODING_TYPES, "positional encoding")):
        for item in value:
            if item not in valid:
                raise UsageError(f"unknown {what} {item!r}; valid: {', '.join(valid)}")
    return [Variant(a, p, causal) for a in dict.fromkeys(attention) for p in dict.fromkeys(positional)]


def all_variants() -> list[Variant]:
    return [Variant(*v) for v in ALL_VARIANTS]


__all__ = [
    "ALL_VARIANTS",
    "BACKENDS",
    "TORCH_TRITON",
    "SweepOutcome",
    "SweepSettings",
    "Variant",
    "all_variants",
    "bench_inputs",
    "parse_variants",
    "run_sweep",
    "variant_config",
]
