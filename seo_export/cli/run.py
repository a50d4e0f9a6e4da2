"""``seo-export run``: inference on an engine (TensorRT) or an ONNX file (ONNX Runtime, or eager PyTorch with the
reference seo ops or the Triton kernels)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from seo_export.backends.tensorrt.profiles import INPUT_NAMES
from seo_export.cli import arrays
from seo_export.cli.common import positive_int, require
from seo_export.cli.text_inputs import add_text_arguments, text_inputs
from seo_export.errors import UsageError

BACKENDS = ("trt", "ort", "torch", "torch-triton")
#: Eager PyTorch, rebuilt from the ONNX file: with the reference seo ops, or with the Triton kernels.
TORCH_BACKENDS = ("torch", "torch-triton")
PRECISIONS = ("fp32", "fp16", "bf16")  # backends.torch_runner.DTYPES' keys (not imported here: torch is slow to load)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="MODEL.engine (TensorRT) or MODEL.onnx")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="trt, ort (ONNX Runtime), torch (eager, rebuilt from the ONNX file's config and "
                             "weights) or torch-triton (the same with the seo ops on the Triton kernels: a CUDA "
                             "GPU, or TRITON_INTERPRET=1 on the CPU); default: trt for .engine, ort for .onnx")
    parser.add_argument("--checkpoint", help="torch, torch-triton: the weights file the ONNX model was exported "
                                             "from, if any")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="torch, torch-triton: compute in this precision (default fp32); trt and ort run the "
                             "file's")
    parser.add_argument("--inputs", metavar="FILE.npz",
                        help="input_ids [batch, seq] integers and optionally attention_mask of the same shape")
    parser.add_argument("--batch", type=positive_int, help="batch of random inputs (default 1)")
    parser.add_argument("--seq-len", type=positive_int, help="sequence length of random inputs (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--output", metavar="OUT.npz",
                        help="save the outputs here: .npz, or .json for `polygraphy run --load-outputs`")
    parser.add_argument("--save-inputs", metavar="IN.npz",
                        help="save the inputs used: .npz (for --inputs), or .json for `polygraphy run --load-inputs`")
    parser.add_argument("--warmup", type=non_negative_int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--iterations", type=positive_int, default=10, help="timed runs (default 10)")
    parser.add_argument("--no-manifest-check", action="store_true",
                        help="trt: load an engine even if its manifest is missing or does not match this machine")
    parser.add_argument("--verbose", action="store_true", help="trt: print TensorRT's log")
    add_text_arguments(parser, note="Instead of --inputs or random inputs; --output holds the outputs of the "
                                    "padded batch, --save-inputs the tokenized ids and mask")


def backend_for(path: Path, requested: str | None) -> str:
    is_engine = path.suffix in ENGINE_SUFFIXES
    if requested is None:
        if not is_engine and path.suffix != ".onnx":
            raise UsageError(f"cannot tell the backend from the suffix of {path}; "
                             f"pass --backend {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}")
        return "trt" if is_engine else "ort"
    require(not (is_engine and requested != "trt"),
            f"--backend {requested} runs ONNX files; {path} is a TensorRT engine (use --backend trt)")
    return requested


# ---- inputs -------------------------------------------------------------------------------------------------

def validate_inputs(arrays: dict[str, np.ndarray], vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """input_ids [batch, seq] integers (ids in the vocabulary when it is known), attention_mask of the same shape."""
    unknown = sorted(set(arrays) - set(INPUT_NAMES))
    if unknown:
        raise UsageError(f"unexpected input {unknown[0]!r}; expected input_ids and optionally attention_mask")
    require("input_ids" in arrays, "the inputs have no input_ids")
    ids = arrays["input_ids"]
    require(ids.ndim == 2 and ids.size > 0,
            f"input_ids must be [batch, seq] with batch and seq >= 1, got shape {ids.shape}")
    require(np.issubdtype(ids.dtype, np.integer), f"input_ids must hold integers, got {ids.dtype}")
    if vocab_size is not None:
        require(0 <= ids.min() and ids.max() < vocab_size,
                f"input_ids must be token ids in [0, {vocab_size}), got values from {ids.min()} to {ids.max()}")
    feeds = {"input_ids": ids.astype(np.int64)}
    if "attention_mask" in arrays:
        mask = arrays["attention_mask"]
        require(mask.shape == ids.shape,
                f"attention_mask must have the shape of input_ids {ids.shape}, got {mask.shape}")
        require(np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_,
                f"attention_mask must hold integers or booleans, got {mask.dtype}")
        feeds["attention_mask"] = mask.astype(np.int64)
    return feeds


def _npz_error(path: Path, exc: Exception) -> UsageError:
    message = str(exc)
    if "Object arrays" in message:
        return UsageError(f"inputs file {path} holds Python objects, which are never loaded; "
                          "save plain integer arrays with np.savez")
    if "pickled data" in message:  # numpy's verdict on anything that is neither npz nor npy
        return UsageError(f"inputs file {path} is not an npz archive (and pickles are never loaded)")
    return UsageError(f"inputs file {path} is not an npz archive ({message.splitlines()[0]})")


def read_inputs(path: str | os.PathLike, vocab_size: int | None = None) -> dict[str, np.ndarray]:
    path = Path(path)
    require(path.is_file(), f"inputs file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)  # never unpickle: an npz can carry code
        if not hasattr(data, "files"):
            raise UsageError(f"inputs file {path} is a single array; save input_ids (and attention_mask) "
                             "with np.savez")
        with data:
            arrays = {name: data[name] for name in data.files}  # object arrays fail here, not at np.load
    except UsageError:
        raise
    except Exception as exc:  # zipfile and numpy raise several types for a corrupt archive
        raise _npz_error(path, exc) from None
    return validate_inputs(arrays, vocab_size)


def random_inputs(batch: int, seq: int, vocab_size: int | None, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, max(vocab_size or 2, 2), size=(batch, seq), dtype=np.int64)
    mask = np.ones_like(input_ids)
    if batch > 1:
        mask[-1, seq // 2 + 1:] = 0  # the last sample is padded, as real batches are
    return {"input_ids": input_ids, "attention_mask": mask}


# ---- backends -----------------------------------------------------------------------------------------------

def model_config(path: Path, backend: str) -> dict | None:
    """The model's config, for the vocabulary: from the ONNX metadata or the engine manifest."""
    from seo_export.backends.tensorrt.manifest import read_manifest
    from seo_export.export.inspect import load_onnx, stored_metadata

    if backend == "trt":
        try:
            manifest = read_manifest(path)
        except UsageError:
            return None  # the runner reports a bad manifest, or skips it with --no-manifest-check
        return manifest.model_config if manifest else None
    return stored_metadata(load_onnx(path), "config")


def make_runner(backend: str, path: Path, args: argparse.Namespace, torch_model=None):
    if backend == "trt":
        from seo_export.backends.tensorrt.runner import TrtRunner

        return TrtRunner(path, check_manifest=not args.no_manifest_check, verbose=args.verbose)
    if backend == "ort":
        from seo_export.backends.ort_runner import OrtRunner

        return OrtRunner(path)
    from seo_export.backends.torch_runner import DTYPES, TorchRunner

    dtype = DTYPES[args.precision or "fp32"]
    if backend == "torch-triton":
        from seo_export.backends.torch_triton import TorchTritonRunner

        return TorchTritonRunner(torch_model, dtype)
    return TorchRunner(torch_model, dtype)


# ---- reporting ----------------------------------------------------------------------------------------------

def time_runs(runner, feeds: dict, warmup: int, iterations: int) -> tuple[dict, np.ndarray]:
    for _ in range(warmup):
        runner.infer(feeds)
    latencies = []
    for _ in range(iterations):
        outputs = runner.infer(feeds)
        latencies.append(runner.last_inference_s)
    return outputs, np.asarray(latencies) * 1e3


def outputs_table(outputs: dict[str, np.ndarray], title: str) -> Table:
    table = Table(title=title)
    for column in ("output", "shape", "dtype", "mean", "std", "min", "max", "finite"):
        table.add_column(column)
    for name, value in outputs.items():
        values = value.astype(np.float64) if value.size else np.zeros(1)
        table.add_row(name, str(tuple(value.shape)), str(value.dtype), f"{values.mean():.4f}", f"{values.std():.4f}",
                      f"{values.min():.4f}", f"{values.max():.4f}", str(bool(np.isfinite(values).all())))
    return table


def latency_table(latencies_ms: np.ndarray, warmup: int) -> Table:
    table = Table(title=f"latency, host to host ({len(latencies_ms)} runs after {warmup} warmup)")
    for column in ("mean ms", "median ms", "p90 ms", "min ms", "max ms"):
        table.add_column(column, justify="right")
    stats = (latencies_ms.mean(), np.median(latencies_ms), np.percentile(latencies_ms, 90),
             latencies_ms.min(), latencies_ms.max())
    table.add_row(*(f"{v:.3f}" for v in stats))
    return table


def report_console() -> Console:
    console = Console()
    # Piped into a file or a log, rich assumes 80 columns and would cut names and shapes.
    return console if console.is_terminal else Console(width=160)


def save_outputs(path: Path, outputs: dict[str, np.ndarray], backend: str, model: Path) -> None:
    """.npz as the runner returns them (float32 for FP16); .json for Polygraphy in the ONNX file's own
    output types, as Polygraphy's runner of the same file returns them."""
    if path.suffix == ".json" and backend != "trt":
        from onnx.helper import tensor_dtype_to_np_dtype

        from seo_export.export.inspect import load_onnx

        declared = {o.name: tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type) for o in load_onnx(model).graph.output}
        outputs = {name: value.astype(declared.get(name, value.dtype)) for name, value in outputs.items()}
    arrays.save_outputs(path, outputs, f"seo-export-{backend}")


def run(args: argparse.Namespace) -> int:
    path = Path(args.model)
    backend = backend_for(path, args.backend)
    require(not (args.inputs and (args.batch or args.seq_len)), "give --inputs or --batch/--seq-len, not both")
    texts = text_inputs(args, {"--inputs": args.inputs, "--batch/--seq-len": args.batch or args.seq_len},
                        args.max_length)
    output = Path(args.output) if args.output else None
    if output is not None:
        arrays.check_path(output, "--output")
    if args.save_inputs:
        arrays.check_path(Path(args.save_inputs), "--save-inputs")

    require(args.precision is None or backend in TORCH_BACKENDS,
            f"--precision applies to --backend {' and '.join(TORCH_BACKENDS)}; {backend} runs the file's precision")
    torch_model = None
    if backend == "torch-triton":
        from seo_export.backends.torch_triton import triton_device

        triton_device()  # no GPU and no interpreter: one line, before the model is rebuilt
    if backend in TORCH_BACKENDS:
        from seo_export.backends.torch_runner import torch_model_from_onnx

        torch_model = torch_model_from_onnx(path, args.checkpoint)
    config = model_config(path, backend)
    vocab_size = (config or {}).get("vocab_size")
    if texts is not None:  # the padded batch of the texts, within the model's limit and vocabulary
        feeds = validate_inputs(texts.feeds(config), vocab_size)
    elif args.inputs:
        feeds = read_inputs(args.inputs, vocab_size)
    else:
        feeds = random_inputs(args.batch or 1, args.seq_len or 128, vocab_size, args.seed)

    with make_runner(backend, path, args, torch_model) as runner:
        outputs, latencies_ms = time_runs(runner, feeds, args.warmup, args.iterations)

    batch, seq = feeds["input_ids"].shape
    console = report_console()
    on = f"{backend} {args.precision}" if args.precision else backend
    console.print(outputs_table(outputs, f"{path.name} on {on}, batch {batch}, seq {seq}"))
    console.print(latency_table(latencies_ms, args.warmup))
    manifest = getattr(runner, "manifest", None)  # trt: what the build found in the engine
    if manifest is not None and manifest.seo_plugin_layers is not None:
        console.print(f"seo plugin layers in the engine: {manifest.seo_plugin_layers}", highlight=False)
    if output is not None:
        save_outputs(output, outputs, backend, path)
        console.print(f"outputs saved to {output}")
    if args.save_inputs:
        arrays.save_inputs(Path(args.save_inputs), feeds)
    finite = all(np.isfinite(v).all() for v in outputs.values() if np.issubdtype(v.dtype, np.floating))
    return 0 if finite else 1
