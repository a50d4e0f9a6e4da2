"""The validate sweep: every variant x backend x input case against eager PyTorch.

For each variant the eager model is built once; each backend gets its own exported
file (FP32, FP16 or INT8 graph), each input case is run on both, and every output is
judged by its precision's rule. A failure is followed by the break search.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from seo_export.utils.timing import interleaved_times, median
from seo_export.errors import MissingDependencyError, UsageError
from seo_export.export import export_onnx
from seo_export.export.internals import CONTRACT_OUTPUTS, PER_SAMPLE_OUTPUTS, output_names
from seo_export.models import TransformerConfig
from seo_export.models.build import build_model, rebuild_model, weights_provenance
from seo_export.parity import locate
from seo_export.parity.cases import InputCase
from seo_export.parity.eager import EagerModel, attention_map
from seo_export.parity.metrics import compare
from seo_export.parity.quantized import Int8Thresholds, check_int8
from seo_export.parity.report import make_break, make_input, make_variant, validate_result, variant_label
from seo_export.parity.tolerance import Verdict, check_fp16, check_fp32, combine

# backend name -> (runtime, precision of the graph it runs)
BACKENDS = {"ort-fp32": ("ort", "fp32"), "ort-fp16": ("ort", "fp16"), "ort-int8": ("ort", "int8"),
            "trt-fp16": ("trt", "fp16")}
# Seeded sweep and test models: attention far from uniform, so miswired attention shows (models.build).
SWEEP_INIT = "peaked"

# The default sweep's model: small enough that 19 variants x 2 graphs finish in minutes on 2 cores,
# with a window and landmark count that the edge-case lengths straddle.
SWEEP_CONFIG = TransformerConfig(
    hidden_size=128, num_layers=2, num_heads=4, vocab_size=1000, intermediate_size=256,
    dropout_rate=0.0, attention_dropout=0.0, attention_window_size=32, attention_num_landmarks=16,
    attention_max_relative_position=8, positional_encoding_max_relative_position=8,
    positional_encoding_max_len=512,
)
VARIANTS = [(a, p, False) for a in ("standard", "local", "sparse", "relative")
            for p in ("sinusoidal", "learned", "relative", "rotary")] + [
    ("standard", "rotary", True), ("local", "rotary", True), ("relative", "sinusoidal", True)]


@dataclass
class Tolerances:
    atol: float = 1e-4
    rtol: float = 1e-4
    fp16_factor: float = 2.0
    fp16_floor: float = 1e-3
    int8: Int8Thresholds = field(default_factory=Int8Thresholds)


@dataclass
class VariantRun:
    """One variant to validate: its config and where its weights come from (or a given file)."""

    config: TransformerConfig
    seed: int = 0
    checkpoint: str | None = None
    init: str = SWEEP_INIT
    model_file: Path | None = None  # validate this file instead of exporting
    # export_onnx arguments of ``model_file`` (precision, opset, ...), read from its metadata
    file_options: dict = field(default_factory=dict)
    # validate --hf: a transformers_reference.TransformersReference; its converted weights are the
    # model's, and its transformers model is checked against eager zoo PyTorch beside the backends
    reference: object | None = None

    @property
    def variant(self) -> dict:
        c = self.config
        return make_variant(c.attention_type, c.positional_encoding_type, c.use_causal_mask)


@dataclass
class Outcome:
    results: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> reason
    attention_maps: dict[str, np.ndarray] = field(default_factory=dict)


def judge_for(precision: str, tolerances: Tolerances, real_mask: np.ndarray,
              baseline: dict[str, np.ndarray] | None) -> Callable[[str, np.ndarray, np.ndarray], Verdict]:
    """The rule for one precision: FP32 by atol/rtol, FP16 against eager FP16's own error, INT8 by
    per-token cosine, pooled relative error and top-1 agreement with eager FP32 (parity.quantized)."""

    def judge(name: str, actual: np.ndarray, expected: np.ndarray) -> Verdict:
        seq_axis = name not in PER_SAMPLE_OUTPUTS
        if precision == "fp32":
            return check_fp32(actual, expected, real_mask, atol=tolerances.atol, rtol=tolerances.rtol,
                              has_seq_axis=seq_axis)
        if precision == "int8":
            return check_int8(name, actual, expected, real_mask, thresholds=tolerances.int8, has_seq_axis=seq_axis,
                              internal=name not in CONTRACT_OUTPUTS)
        return check_fp16(actual, expected, baseline[name], real_mask, factor=tolerances.fp16_factor,
                          floor=tolerances.fp16_floor, has_seq_axis=seq_axis)

    return judge


def backends_for_file(path: Path, precision: str, requested: list[str] | None) -> list[str]:
    """The backends that run a file of ``precision`` (all of them when ``requested`` is None);
    refuses a requested backend that would judge the file by another precision's rule."""
    serving = [b for b, (_, p) in BACKENDS.items() if p == precision]
    for backend in requested or ():
        if BACKENDS[backend][1] != precision:
            raise UsageError(f"{path} is an {precision.upper()} graph, and {backend} runs "
                             f"{BACKENDS[backend][1].upper()} graphs; use --backends {','.join(serving)}, or "
                             f"validate an export made with --precision {BACKENDS[backend][1]}")
    return serving if requested is None else requested


def backend_available(backend: str) -> str | None:
    """None when the backend can run here, else why not."""
    if BACKENDS[backend][0] == "trt":
        from seo_export.backends.tensorrt.loader import load_tensorrt

        try:
            load_tensorrt("the trt-fp16 backend")
        except MissingDependencyError as exc:
            return str(exc)
    return None


def make_runner(backend: str, onnx_path: Path, workdir: Path, max_seq: int, batch: int):
    runtime, _ = BACKENDS[backend]
    if runtime == "ort":
        from seo_export.backends.ort_runner import OrtRunner

        return OrtRunner(onnx_path)
    from seo_export.backends.tensorrt.builder import build_engine
    from seo_export.backends.tensorrt.profiles import parse_profile
    from seo_export.backends.tensorrt.runner import TrtRunner

    engine = workdir / f"{onnx_path.stem}.engine"
    profile = parse_profile(f"batch=1:{batch}:{batch},seq=1:{max_seq}:{max_seq}")
    build_engine(onnx_path, engine, [profile], timing_cache_path=workdir / "timing.cache")
    return TrtRunner(engine)


class Validator:
    def __init__(self, backends: list[str], tolerances: Tolerances, workdir: Path, find_break: bool = True,
                 progress: Callable[..., None] | None = None):
        self.backends, self.tolerances, self.workdir = backends, tolerances, workdir
        self.find_break = find_break
        self._progress = progress or (lambda message, done=None, total=None: None)
        self.variant_index = (0, 0)
        self._file_differences: dict[Path, list[str]] = {}  # model file -> what differs from a fresh export
        self._int8_simulations: dict[Path, tuple] = {}  # INT8 file -> (why it is not simulated, its simulation)
        self.outcome = Outcome()

    def progress(self, message: str) -> None:
        """Reports a step, counted in variants: ``[3/19] local/rotary: ...`` in plain logs."""
        self._progress(message, *self.variant_index)

    def run(self, runs: list[VariantRun], cases_for: Callable[[TransformerConfig], list[InputCase]]) -> Outcome:
        for backend in self.backends:
            reason = backend_available(backend)
            if reason:
                self.outcome.skipped[backend] = reason
        for index, run in enumerate(runs):
            self.variant_index = (index + 1, len(runs))
            self.validate_variant(run, cases_for(run.config))
        return self.outcome

    def _eager_model(self, run: VariantRun):
        if run.reference is not None and run.checkpoint is None:  # the converted weights, as a file in workdir
            run.checkpoint = str(run.reference.save_weights(self.workdir))
        if run.model_file is None:
            return build_model(run.config, run.seed, run.checkpoint, run.init)
        # From the file's record, not a guess: its weights may differ from the model's (the faults
        # validate is for), so they are judged, not compared here as `run --backend torch` does.
        return rebuild_model(run.config, self._provenance(run), run.checkpoint)

    def _provenance(self, run: VariantRun) -> dict:
        """Where the weights come from: a given file's record (or the checkpoint given for a file with
        none), else the run's seed, init or checkpoint."""
        if run.model_file is not None:
            from seo_export.export.inspect import load_onnx, stored_metadata

            stored = stored_metadata(load_onnx(run.model_file), "weights")
            if stored or not run.checkpoint:  # nothing recorded, nothing given: rebuild_model says what to pass
                return stored or {}
        return weights_provenance(run.seed, run.checkpoint, run.init)

    def _export(self, run: VariantRun, model, precision: str, keep_fp32: tuple[str, ...] = ()) -> Path:
        """A fresh export of ``model`` with the given file's options (or the defaults), cached in workdir."""
        options = {k: v for k, v in run.file_options.items() if k not in ("precision", "keep_fp32")}
        keep = tuple(run.file_options.get("keep_fp32", ())) + keep_fp32
        label = variant_label(run.variant).replace("/", "-")
        suffix = "-fp32island-" + "-".join(keep) if keep else ""
        path = self.workdir / f"{label}-{precision}{suffix}.onnx"
        if path.exists():
            return path
        if precision == "int8" and not options.get("decomposed"):  # the FP32 export, quantized: no second trace
            from seo_export.export.quantize import quantize_file

            quantize_file(self._export(run, model, "fp32"), path)
        else:
            export_onnx(model, path, precision=precision, keep_fp32=keep, weights=self._provenance(run), **options)
        return path

    def _model_file(self, run: VariantRun, model, precision: str) -> Path:
        return run.model_file if run.model_file is not None else self._export(run, model, precision)

    def _island_blocker(self, run: VariantRun, model, precision: str, module: str) -> str | None:
        """Why an FP32-island export would not test the file under test; None when it would.

        The island is exported from the eager model's weights, so it says something about the
        file only when the file is exactly what those weights export to.
        """
        if run.model_file is None:
            return None
        if run.model_file not in self._file_differences:  # once per file, not per failing case
            from seo_export.export.inspect import graph_differences, load_onnx

            fresh = self._export(run, model, precision)
            self._file_differences[run.model_file] = graph_differences(
                load_onnx(run.model_file, with_weights=True), load_onnx(fresh, with_weights=True))
        differences = self._file_differences[run.model_file]
        if not differences:
            return None
        return (f"keeping {module} in FP32 was not tried: {run.model_file.name} is not what its recorded weights "
                f"export to ({'; '.join(differences)} differ), so an island re-exported from them would not "
                "test this file")

    def validate_variant(self, run: VariantRun, cases: list[InputCase]) -> None:
        if run.model_file is not None:
            backends_for_file(run.model_file, run.file_options["precision"], self.backends)
        label = variant_label(run.variant)
        model = self._eager_model(run)
        if run.reference is not None:
            cases = run.reference.prepare_cases(cases)
            self._check_reference(run, model, cases)
        eager32 = EagerModel(model, torch.float32)
        eager16 = None
        longest = max(cases, key=lambda c: c.seq)
        self.outcome.attention_maps[label] = attention_map(model, longest.feeds)
        for backend in self.backends:
            if backend in self.outcome.skipped:
                continue
            _, precision = BACKENDS[backend]
            self.progress(f"{label}: exporting the {precision} graph")
            path = self._model_file(run, model, precision)
            if precision == "fp16" and eager16 is None:
                eager16 = EagerModel(model, torch.float16)
            max_seq, batch = longest.seq, max(c.batch for c in cases)
            with make_runner(backend, path, self.workdir, max_seq, batch) as runner:
                for case in cases:
                    self.progress(f"{label}: {backend} on {case.name} (seq {case.seq})")
                    self._check_case(run, model, backend, precision, runner, case, eager32, eager16, path)

    def _check_reference(self, run: VariantRun, model, cases: list[InputCase]) -> None:
        """validate --hf: the conversion's check, eager zoo PyTorch (FP32) against transformers, per case."""
        label = variant_label(run.variant)
        for case in cases:
            self.progress(f"{label}: transformers on {case.name} (seq {case.seq})")
            self.outcome.results.append(run.reference.check_case(
                model, run.variant, case, self.tolerances.atol, self.tolerances.rtol, self.find_break))

    def _check_case(self, run, model, backend, precision, runner, case, eager32, eager16, path) -> None:
        expected = eager32(case.feeds)
        baseline = eager16(case.feeds) if precision == "fp16" else None
        actual = runner.infer(case.feeds)
        judge = judge_for(precision, self.tolerances, case.real_mask, baseline)
        names = output_names(run.config)
        verdicts = {name: judge(name, actual[name], expected[name]) for name in names}
        verdict = combine(verdicts)
        outputs = {name: compare(actual[name], expected[name], case.real_mask, rtol=self.tolerances.rtol,
                                 has_seq_axis=name not in PER_SAMPLE_OUTPUTS) for name in names}
        # Like with like: an FP16 graph against eager FP16. One untimed call each first: a session's
        # first call pays for allocation and planning.
        eager = eager16 if precision == "fp16" else eager32
        times = interleaved_times({"eager": lambda: eager(case.feeds), "backend": lambda: runner.infer(case.feeds)},
                                  rounds=3, warmup=1)
        found = None
        if not verdict.passed and self.find_break:
            found = self._find_break(run, model, backend, precision, case, expected, baseline, path)
        self.outcome.results.append(validate_result(
            run.variant, backend, make_input(case.batch, case.seq, case.name), outputs, verdict,
            backend_s=median(times["backend"]), eager_s=median(times["eager"]),
            eager_precision="fp16" if precision == "fp16" else "fp32",
            break_=found))

    def _find_break(self, run, model, backend, precision, case, expected, baseline, path) -> dict | None:
        layers = run.config.num_layers
        judge = judge_for(precision, self.tolerances, case.real_mask, baseline)
        with locate.internals_workdir() as tmp:
            probe, mapping = locate.with_internal_outputs(path, layers, Path(tmp))
            with make_runner(backend, probe, Path(tmp), case.seq, case.batch) as runner:
                values = runner.infer(case.feeds)
        failure = locate.first_failure(judge, values, expected, mapping, layers)
        # Every internal passes: what remains is the pooler and classifier (or the final cast).
        module = ("classifier" if run.config.num_labels else "pooler") if failure is None else failure[0]
        if precision == "int8":
            return make_break(module, note=self._int8_reference_note(run, model, case, expected, path))
        if precision != "fp16":
            return make_break(module)
        blocker = self._island_blocker(run, model, precision, module)
        if blocker:
            return make_break(module, note=blocker)
        island = self._export(run, model, precision, keep_fp32=(module,))
        with make_runner(backend, island, self.workdir, case.seq, case.batch) as runner:
            again = runner.infer(case.feeds)
        fixed = combine({n: judge(n, again[n], expected[n]) for n in output_names(run.config)}).passed
        return make_break(module, fixed, f"--keep-fp32 {module}" if fixed else None)

    def _int8_reference_note(self, run, model, case, expected, path) -> str:
        """Whether INT8 itself loses this accuracy: eager PyTorch with the file's quantization simulated
        (``parity.int8_reference``), judged by the same rule against eager FP32."""
        from seo_export.export.inspect import load_onnx, stored_metadata
        from seo_export.parity.int8_reference import simulated_int8, simulates

        if path not in self._int8_simulations:  # once per file, not per failing case
            settings = stored_metadata(load_onnx(path), "quantization")
            why_not = simulates(settings)
            self._int8_simulations[path] = (why_not, None if why_not else EagerModel(simulated_int8(model, settings)))
        why_not, simulation = self._int8_simulations[path]
        if why_not:
            return f"INT8 itself was not simulated: {why_not}"
        simulated = simulation(case.feeds)
        judge = judge_for("int8", self.tolerances, case.real_mask, None)
        verdict = combine({n: judge(n, simulated[n], expected[n]) for n in output_names(run.config)})
        if verdict.passed:
            return ("eager PyTorch with the file's INT8 scheme simulated passes the same rule: the file, not INT8, "
                    "loses the accuracy (a broken export or quantizer)")
        return (f"eager PyTorch with the file's INT8 scheme simulated fails too ({verdict.reason}): INT8 itself "
                "loses this accuracy on this model, not the export; serve it with ort-fp32 or ort-fp16")


def new_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="seo-export-validate-")


def file_run(path: Path, config: TransformerConfig | None, seed: int = 0, checkpoint: str | None = None) -> VariantRun:
    """A run over a given ONNX file: its config and export options from its metadata; refuses a
    file that does not match ``config``."""
    from seo_export.export.inspect import config_from_onnx, export_options, load_onnx

    if path.suffix in (".engine", ".plan"):
        raise UsageError(f"{path}: validating a prebuilt engine needs its ONNX; pass the .onnx it was built from")
    proto = load_onnx(path)
    stored = config_from_onnx(proto)
    if config is not None and stored != config:
        diffs = [f"{k}: file {v} vs config {getattr(config, k)}" for k, v in stored.to_dict().items()
                 if getattr(config, k) != v]
        raise UsageError(f"{path} does not match the given config ({'; '.join(diffs[:3])})")
    options = export_options(proto)
    if options["precision"] not in ("fp32", "fp16", "int8"):
        raise UsageError(f"{path} records precision {options['precision']!r}; validate judges fp32, fp16 and int8 "
                         "graphs")
    return VariantRun(stored, seed, checkpoint, model_file=path, file_options=options)
