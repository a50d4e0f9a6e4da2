"""Triton model repositories from an exported ONNX file or a TensorRT engine.

For an ONNX file ``REPO/NAME/`` holds::

    config.pbtxt             platform "onnxruntime_onnx": GPU and production Triton images
    configs/python.pbtxt     backend "python": the same model through model.py on ONNX Runtime; what a
                             CPU host (and `seo-export serve`) runs: tritonserver --model-config-name=python
    1/model.onnx             the file (and its external data, if any)
    1/model.py               seo_export/serve/python_model.py
    1/seo_export_model.json  session settings, input limits, where the file came from
    README.md

For a TensorRT engine, ``config.pbtxt`` is a ``tensorrt_plan`` configuration from the engine's manifest
(its optimization profiles as the shape limits) and ``1/model.plan`` the engine. With a tokenizer,
``NAME_tokenizer`` (a python model: text -> input_ids/attention_mask) and ``NAME_text`` (an ensemble:
a string tensor ``text`` in, NAME's outputs out) are written beside.

Every configuration has dynamic batching on, -1 for the batch and sequence dimensions, INT64
``input_ids`` / ``attention_mask`` inputs and the graph's outputs. The configurations are plain
functions of what they describe, testable without Triton, TensorRT or a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from seo_export import __version__
from seo_export.errors import UsageError
from seo_export.serve import python_model, tokenizer_model
from seo_export.utils.files import sha256_file

VERSION = "1"
INPUT_NAMES = ("input_ids", "attention_mask")
PYTHON_CONFIG = "python"  # configs/python.pbtxt, selected with --model-config-name=python
DEFAULT_MAX_BATCH_SIZE = 32
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: ONNX element type -> Triton data type.
ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64", 7: "TYPE_INT64",
                  6: "TYPE_INT32", 3: "TYPE_INT8", 2: "TYPE_UINT8", 9: "TYPE_BOOL"}


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # "TYPE_FP32"
    dims: tuple[int, ...]  # without the batch dimension; -1 where variable


@dataclass
class Written:
    repository: Path
    models: dict[str, str] = field(default_factory=dict)  # model name -> what it is
    readme: Path | None = None


# ---- configuration text ------------------------------------------------------------------------------------------

def _comment(lines) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def _dims(dims) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensors(kind: str, tensors) -> str:
    if not tensors:
        return ""
    body = ",\n".join(f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: {_dims(t.dims)}\n  }}'
                      for t in tensors)
    return f"{kind} [\n{body}\n]\n"


def _dynamic_batching(max_queue_delay_us: int) -> str:
    return f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"


def _parameters(values: dict[str, str]) -> str:
    return "".join(f'parameters {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n' for k, v in values.items())


def _instances(count: int, kind: str | None, profiles: list[str] | None = None) -> str:
    parts = [f"count: {count}"]
    if kind:
        parts.append(f"kind: {kind}")
    if profiles:
        parts.append("profile: [ " + ", ".join(f'"{p}"' for p in profiles) + " ]")
    return "instance_group [\n  {\n" + "".join(f"    {p}\n" for p in parts) + "  }\n]\n"


def model_inputs() -> list[Tensor]:
    return [Tensor(name, "TYPE_INT64", (-1,)) for name in INPUT_NAMES]


def python_config(name: str, outputs: list[Tensor], max_batch_size: int, instances: int, max_queue_delay_us: int = 0,
                  max_sequence_length: int | None = None, header: list[str] = ()) -> str:
    """The python-backend configuration (configs/python.pbtxt): model.py runs the ONNX file on ONNX Runtime."""
    lines = list(header) + [
        "python backend: 1/model.py runs 1/model.onnx on ONNX Runtime with seo-export's session settings",
        "(1/seo_export_model.json). Its Python needs numpy < 2 (the python-backend stub of Triton 2.51",
        "corrupts outputs under numpy 2) and onnxruntime; `seo-export serve` provides both.",
        "Selected with: tritonserver --model-config-name=python (seo-export serve passes it).",
        "parameters: intra_op_threads (0: the host's cores / instances), max_sequence_length (longer requests",
        "are refused; default: the model's own limit).",
    ]
    parameters = {"intra_op_threads": "0"}
    if max_sequence_length:
        parameters["max_sequence_length"] = str(max_sequence_length)
    return (_comment(lines) + f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
            + _tensors("input", model_inputs()) + _tensors("output", outputs) + _dynamic_batching(max_queue_delay_us)
            + _instances(instances, "KIND_CPU") + _parameters(parameters))


def onnxruntime_config(name: str, outputs: list[Tensor], max_batch_size: int, instances: int,
                       max_queue_delay_us: int = 0, header: list[str] = ()) -> str:
    """The onnxruntime_onnx configuration (config.pbtxt) for Triton images with the ONNX Runtime backend."""
    lines = list(header) + [
        "onnxruntime_onnx: for Triton images with the ONNX Runtime backend (GPU or CPU); instances go on",
        "the GPUs where there are any (no kind given: KIND_AUTO). The seo:: nodes carry ONNX function",
        "bodies, which ONNX Runtime runs as they are. On a host with the python backend only (pip's",
        "nvidia-pytriton, `seo-export serve`) use configs/python.pbtxt: --model-config-name=python.",
    ]
    return (_comment(lines) + f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
            + _tensors("input", model_inputs()) + _tensors("output", outputs) + _dynamic_batching(max_queue_delay_us)
            + _instances(instances, None))


def engine_limits(manifest) -> tuple[int, int, int, int]:
    """(smallest batch, largest batch every profile takes, shortest and longest sequence) of an engine."""
    profiles = manifest.profiles
    if not profiles:
        raise UsageError("the engine manifest lists no optimization profile; "
                         "rebuild the engine with `seo-export build`")
    return (min(p.batch.min for p in profiles), min(p.batch.max for p in profiles),
            min(p.seq.min for p in profiles), max(p.seq.max for p in profiles))


def engine_config(manifest, name: str, max_batch_size: int | None = None, instances: int = 1,
                  outputs: list[Tensor] | None = None, max_queue_delay_us: int = 0, header: list[str] = ()) -> str:
    """The tensorrt_plan configuration of an engine, from its manifest (``backends.tensorrt.manifest``).

    max_batch_size defaults to the largest batch every profile accepts (asking for more is an error);
    each profile's [batch, seq] ranges are listed in comments, every profile is offered to the instances,
    and what the host needs for the engine (TensorRT version, GPU, the seo plugins) heads the file.
    ``outputs`` None leaves the outputs to Triton's auto-complete from the engine.
    """
    low_batch, high_batch, low_seq, high_seq = engine_limits(manifest)
    if max_batch_size is None:
        max_batch_size = high_batch
    if max_batch_size > high_batch:
        raise UsageError(f"--max-batch-size {max_batch_size} is over what the engine's profiles accept "
                         f"(every profile takes batches up to {high_batch}); rebuild with a larger batch range")
    env = manifest.environment
    plugins = manifest.seo_plugin_layers
    lines = list(header) + [
        f"tensorrt_plan: 1/model.plan was built with TensorRT {env.tensorrt_version} (CUDA {env.cuda_version}) for a",
        f"{env.gpu_name} (compute capability {env.compute_capability}); the serving Triton image must have that",
        "TensorRT version and the host that GPU model, or the plan does not deserialize.",
        (f"It holds {plugins} seo plugin layers" if plugins is not None else "It may hold seo plugin layers")
        + " (TensorRT AOT plugins from seo_plugins, build "
        + f"{(env.plugin_manifest_sha256 or 'none')[:12]}): their kernels are compiled ahead of time into",
        "the plan. Whether Triton's tensorrt backend loads such a plan without the plugins registered has not",
        "been checked (see README.md).",
    ]
    for index, profile in enumerate(manifest.profiles):
        lines.append(f"profile {index}: batch {profile.batch.min}..{profile.batch.max} "
                     f"(opt {profile.batch.opt}), seq {profile.seq.min}..{profile.seq.max} (opt {profile.seq.opt})")
    if low_batch > 1:
        lines.append(f"warning: no profile takes a batch under {low_batch}: single-row requests fail")
    lines.append(f"sequences outside {low_seq}..{high_seq} are refused by every profile")
    text = (_comment(lines) + f'name: "{name}"\nplatform: "tensorrt_plan"\nmax_batch_size: {max_batch_size}\n'
            + _tensors("input", model_inputs()))
    text += _tensors("output", outputs) if outputs else "# outputs: auto-completed by Triton from the engine\n"
    profiles = [str(i) for i in range(len(manifest.profiles))]
    return text + _dynamic_batching(max_queue_delay_us) + _instances(instances, "KIND_GPU", profiles)


def tokenizer_config(name: str, max_batch_size: int, instances: int = 1, truncate: bool = False,
                     header: list[str] = ()) -> str:
    lines = list(header) + [
        "python backend: texts -> input_ids / attention_mask with the checkpoint's tokenizer.json (1/model.py,",
        "settings in 1/seo_export_tokenizer.json); needs numpy and the tokenizers library.",
        'parameter truncate: "true" cuts texts over the limit (keeping the special tokens) instead of refusing them.',
    ]
    return (_comment(lines) + f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
            + _tensors("input", [Tensor("text", "TYPE_STRING", (1,))])
            + _tensors("output", model_inputs()) + _dynamic_batching(0) + _instances(instances, "KIND_CPU")
            + _parameters({"truncate": "true" if truncate else "false"}))


def ensemble_config(name: str, model: str, tokenizer: str, outputs: list[Tensor], max_batch_size: int,
                    header: list[str] = ()) -> str:
    lines = list(header) + [f"ensemble: text -> {tokenizer} -> {model}; a request's texts are one padded batch, "
                            "as `seo-export run --text` pads them."]
    step_one = (f'    {{\n      model_name: "{tokenizer}"\n      model_version: -1\n'
                '      input_map { key: "text" value: "text" }\n'
                + "".join(f'      output_map {{ key: "{n}" value: "{n}" }}\n' for n in INPUT_NAMES) + "    }")
    step_two = (f'    {{\n      model_name: "{model}"\n      model_version: -1\n'
                + "".join(f'      input_map {{ key: "{n}" value: "{n}" }}\n' for n in INPUT_NAMES)
                + "".join(f'      output_map {{ key: "{t.name}" value: "{t.name}" }}\n' for t in outputs) + "    }")
    return (_comment(lines) + f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {max_batch_size}\n'
            + _tensors("input", [Tensor("text", "TYPE_STRING", (1,))]) + _tensors("output", outputs)
            + f"ensemble_scheduling {{\n  step [\n{step_one},\n{step_two}\n  ]\n}}\n")


# ---- what a file holds -----------------------------------------------------------------------------------------

def _value_tensor(value) -> Tensor:
    tensor = value.type.tensor_type
    if tensor.elem_type not in ONNX_TO_TRITON:
        raise UsageError(f"graph value {value.name} has ONNX element type {tensor.elem_type}, "
                         "which Triton cannot carry")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return Tensor(value.name, ONNX_TO_TRITON[tensor.elem_type], tuple(dims[1:]))


def onnx_io(proto) -> tuple[list[Tensor], list[Tensor]]:
    """(inputs, outputs) of a graph, without the batch dimension; the inputs must be the model's two."""
    inputs = [_value_tensor(v) for v in proto.graph.input]
    names = tuple(t.name for t in inputs)
    if set(names) != set(INPUT_NAMES) or any(t.data_type != "TYPE_INT64" or len(t.dims) != 1 for t in inputs):
        got = ", ".join(f"{t.name} {t.data_type} rank {len(t.dims) + 1}" for t in inputs)
        raise UsageError(f"the graph's inputs are {got}; a served model takes input_ids and attention_mask, INT64 "
                         "[batch, seq] (export it with `seo-export export`)")
    outputs = [_value_tensor(v) for v in proto.graph.output]
    if not outputs:
        raise UsageError("the graph has no outputs")
    return inputs, outputs


def _external_files(proto, source_dir: Path) -> list[str]:
    """Relative paths of the external-data files the graph's initializers name."""
    import onnx

    files = set()
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    missing = [f for f in sorted(files) if not (source_dir / f).is_file()]
    if missing:
        raise UsageError(f"the ONNX file's external data {source_dir / missing[0]} does not exist")
    return sorted(files)


def _place(source: Path, target: Path) -> None:
    """A hard link where the file system allows (exports are replaced by rename, never edited), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def session_settings() -> dict:
    """The ONNX Runtime settings ``backends.ort_runner.create_session`` applies, as data for model.py."""
    from seo_export.backends.ort_runner import CPU_SLOWER_FUSIONS

    return {"log_severity_level": 3, "config_entries": {"session.force_spinning_stop": "1"},
            "cpu_disabled_optimizers": list(CPU_SLOWER_FUSIONS)}


# ---- README ----------------------------------------------------------------------------------------------------

def _client_example(name: str, outputs: list[Tensor]) -> str:
    first = outputs[0].name
    return f"""```python
import numpy as np
import tritonclient.http as httpclient   # pip install "tritonclient[http]"

client = httpclient.InferenceServerClient("127.0.0.1:8000")
ids = np.array([[2, 17, 42, 3]], dtype=np.int64)
inputs = [httpclient.InferInput("input_ids", list(ids.shape), "INT64"),
          httpclient.InferInput("attention_mask", list(ids.shape), "INT64")]
inputs[0].set_data_from_numpy(ids)
inputs[1].set_data_from_numpy(np.ones_like(ids))
print(client.infer("{name}", inputs).as_numpy("{first}").shape)
```"""


def readme(name: str, kind: str, source: Path, outputs: list[Tensor], max_batch_size: int, instances: int,
           details: list[str], text_models: tuple[str, str] | None) -> str:
    io = "\n".join(f"| output | `{t.name}` | {t.data_type[5:]} | [batch, {', '.join(map(str, t.dims))}] |"
                   for t in outputs)
    sections = [f"# Triton model `{name}`", "",
                f"Written by seo-export {__version__} (`seo-export triton-repo`) from `{source.name}`: {kind}.", "",
                "| | name | type | shape |", "|---|---|---|---|",
                "| input | `input_ids` | INT64 | [batch, seq] |", "| input | `attention_mask` | INT64 | [batch, seq] |",
                io, "",
                f"Dynamic batching is on (up to {max_batch_size} rows per execution), {instances} instance(s). "
                "-1 in a shape is any size; the batch dimension is implicit (`max_batch_size`).", ""]
    sections += details
    if text_models:
        tokenizer, text = text_models
        sections += ["", "## Text in", "",
                     f"`{text}` is an ensemble: a BYTES tensor `text` of shape [batch, 1] (UTF-8 texts) goes through "
                     f"`{tokenizer}` (the checkpoint's `tokenizer.json`: [CLS] ... [SEP], right padding to the "
                     f"request's longest text, as `seo-export run --text` encodes a batch) into `{name}`, with "
                     f"`{name}`'s outputs. "
                     "Texts over the length limit are refused unless `truncate` is set to \"true\" in "
                     f"`{tokenizer}/config.pbtxt`. Its Python needs the `tokenizers` library.",
                     "", "```python", "import numpy as np, tritonclient.http as httpclient",
                     'texts = np.array([["First page"], ["Second page"]], dtype=object)',
                     'inp = httpclient.InferInput("text", list(texts.shape), "BYTES")',
                     "inp.set_data_from_numpy(texts)",
                     f'out = httpclient.InferenceServerClient("127.0.0.1:8000").infer("{text}", [inp])', "```"]
    sections += ["", "## Calling it", "", _client_example(name, outputs), "",
                 "Over HTTP without a client library: `POST /v2/models/" + name + "/infer` with "
                 '`{"inputs": [{"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": [2, 17, 42, 3]}, '
                 '{"name": "attention_mask", "shape": [1, 4], "datatype": "INT64", "data": [1, 1, 1, 1]}]}`. '
                 "Prometheus metrics are on the metrics port (`/metrics`), per-model statistics at "
                 f"`GET /v2/models/{name}/stats`.", ""]
    return "\n".join(sections)


def _python_details(name: str) -> list[str]:
    return [
        "## Serving it", "",
        "* **This machine, CPU** — `seo-export serve REPO` starts the Triton Inference Server 2.51 that",
        "  `nvidia-pytriton==0.7.0` bundles (python backend only) on 127.0.0.1 with `--model-config-name=python`,",
        "  so this model runs through `configs/python.pbtxt`: `1/model.py` on ONNX Runtime.",
        "* **A Triton container image with the ONNX Runtime backend (GPU or CPU)** —",
        "  `tritonserver --model-repository=REPO` reads `config.pbtxt` (`onnxruntime_onnx`). To use the python",
        "  model there instead, add `--model-config-name=python` and install numpy and onnxruntime (or",
        "  onnxruntime-gpu) into the image's Python.",
        "",
        "`1/model.py` needs numpy and onnxruntime only — not torch and not seo-export — so the repository can",
        "be copied to any host. Its session settings are seo-export's",
        "(`seo_export.backends.ort_runner.create_session`:",
        "threads that stop spinning after each run, the CPU fusions seo-export measured as slower left off), stored in",
        "`1/seo_export_model.json` when the repository was written. The python-backend stub of Triton 2.51 needs",
        "**numpy < 2** in that Python: under numpy 2 it returns empty or mis-sized outputs without an error.",
        "`seo-export serve` runs it in its own small virtual environment (numpy 1.26, the rest shared with",
        "seo-export's environment) for that reason.",
        "",
        "Every request is checked in `model.py` (both inputs, INT64, rank 2, equal shapes, the sequence within",
        "the model's limit, ids inside the vocabulary, a 0/1 mask); a bad one gets an error response naming the",
        "problem and the instance keeps serving. Requests of the same shape that Triton batches together run as",
        "one ONNX Runtime call. Each instance uses the host's cores divided by the instance count",
        "(`intra_op_threads` in `configs/python.pbtxt` overrides).",
    ]


def _engine_details(manifest) -> list[str]:
    env = manifest.environment
    return [
        "## Serving it", "",
        "`config.pbtxt` is a `tensorrt_plan` configuration for a Triton container image with the TensorRT backend",
        "on a GPU host. What that host needs:", "",
        f"* TensorRT **{env.tensorrt_version}** in the image (Triton images each ship one TensorRT version; see",
        "  NVIDIA's framework support matrix) — a plan only deserializes with the TensorRT that built it;",
        f"* a **{env.gpu_name}** (compute capability {env.compute_capability}) — plans hold kernels for one GPU",
        "  model;",
        f"* CUDA {env.cuda_version} or a newer driver;",
        "* the seo plugins: the plan holds "
        + (f"{manifest.seo_plugin_layers}" if manifest.seo_plugin_layers is not None else "an uncounted number of")
        + " seo plugin layers, TensorRT AOT (ahead-of-time compiled) Python plugins from `seo_plugins`",
        f"  (plugin build `{(env.plugin_manifest_sha256 or 'none')[:12]}`). TensorRT documents that AOT plugin",
        "  kernels are",
        "  embedded in the plan and load without Python; loading such a plan in Triton's tensorrt backend has",
        "  **not been checked** here (no GPU). If the server logs that a plugin creator is missing, serve the ONNX",
        "  file instead (`seo-export triton-repo MODEL.onnx`).", "",
        "The bundled CPU server of `seo-export serve` has no TensorRT backend and refuses this model.",
        "Sequences and batches outside the profiles (listed in `config.pbtxt`) are refused by the server.",
    ]


# ---- writing -----------------------------------------------------------------------------------------------------

def _header(source: Path, digest: str | None) -> list[str]:
    return [f"Written by seo-export {__version__} (seo-export triton-repo) from {source.name}"
            + (f" (sha256 {digest[:16]})" if digest else "") + "."]


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UsageError(f"model name {name!r} is not a usable Triton model name: use letters, digits, '_', '-' "
                         "and '.', starting with a letter or digit (--name)")
    return name


def _engine_outputs(engine: Path, manifest, notice=None) -> list[Tensor] | None:
    """The outputs of the ONNX file the engine was built from, when it is beside the engine or here."""
    from seo_export.export.inspect import load_onnx

    if not manifest.onnx_file:
        return None
    for candidate in (engine.parent / manifest.onnx_file, Path(manifest.onnx_file)):
        if candidate.is_file():
            if sha256_file(candidate) != manifest.onnx_sha256:
                if notice:
                    notice(f"{candidate} is not the file the engine was built from (sha256 differs); "
                           "leaving the outputs to Triton's auto-complete")
                return None
            return onnx_io(load_onnx(candidate))[1]
    return None


def write_repository(model: str | os.PathLike, repository: str | os.PathLike, name: str | None = None,
                     max_batch_size: int | None = None, instances: int = 1, tokenizer: str | os.PathLike | None = None,
                     max_queue_delay_us: int = 0, max_sequence_length: int | None = None, truncate: bool = False,
                     overwrite: bool = False, notice=None) -> Written:
    """Write ``repository/NAME`` (and NAME_tokenizer, NAME_text with ``tokenizer``) for ``model``: an .onnx
    file, or an engine with its manifest. The repository may hold other models; an existing model folder of
    the same name is replaced only with ``overwrite``. The folders appear whole or not at all."""
    model = Path(model)
    if not model.is_file():
        raise UsageError(f"model {model} does not exist")
    name = _check_name(name or model.stem)
    if instances < 1:
        raise UsageError(f"--instances must be at least 1, got {instances}")
    if max_batch_size is not None and max_batch_size < 1:
        raise UsageError(f"--max-batch-size must be at least 1, got {max_batch_size}")
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise UsageError(f"{repository} is a file; give a folder for the model repository")
    text_names = (f"{name}_tokenizer", f"{name}_text") if tokenizer else None
    names = [name, *(text_names or ())]
    taken = [n for n in names if (repository / n).exists()]
    if taken and not overwrite:
        raise UsageError(f"{repository / taken[0]} exists; pass --overwrite to replace it (or --name for another name)")

    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
    try:
        if model.suffix == ".onnx":
            kind, outputs, config, batch = _stage_onnx(model, staging / name, name, max_batch_size, instances,
                                                       max_queue_delay_us, max_sequence_length, text_names)
        else:
            kind, outputs, config, batch = _stage_engine(model, staging / name, name, max_batch_size, instances,
                                                         max_queue_delay_us, text_names, notice)
        written = Written(repository, {name: kind})
        if tokenizer:
            _stage_text(Path(tokenizer), staging, name, text_names, outputs, config, batch, instances, truncate,
                        max_sequence_length)
            written.models[text_names[0]] = "python backend: tokenizer"
            written.models[text_names[1]] = "ensemble: text in"
        for n in names:  # replace whole folders: move the old aside, rename the new in, remove the old
            target = repository / n
            old = staging / f".old-{n}"
            if target.exists():
                target.rename(old)
            (staging / n).rename(target)
        written.readme = repository / name / "README.md"
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage_onnx(model: Path, folder: Path, name: str, max_batch_size, instances, delay, max_sequence_length,
                text_names):
    from seo_export.export.inspect import config_from_onnx, load_onnx
    from seo_export.text import model_limit

    proto = load_onnx(model)
    config = config_from_onnx(proto)
    _, outputs = onnx_io(proto)
    limit = model_limit(config)
    if max_sequence_length is not None and limit is not None and max_sequence_length > limit[0]:
        raise UsageError(f"--max-seq-len {max_sequence_length} is over the model's own limit: {limit[1]}")
    sequence_limit = max_sequence_length or (limit[0] if limit else None)
    batch = max_batch_size or DEFAULT_MAX_BATCH_SIZE
    digest = sha256_file(model)
    header = _header(model, digest)
    version = folder / VERSION
    version.mkdir(parents=True)
    _place(model, version / "model.onnx")
    for relative in _external_files(proto, model.parent):
        _place(model.parent / relative, version / relative)
    shutil.copyfile(python_model.__file__, version / "model.py")
    settings = {"format": "seo-export-triton-model", "seo_export_version": __version__, "model_file": "model.onnx",
                "source": {"file": model.name, "sha256": digest}, "session": session_settings(),
                "max_sequence_length": sequence_limit, "vocab_size": config.vocab_size,
                "config": config.to_dict()}
    (version / python_model.SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    (folder / "config.pbtxt").write_text(onnxruntime_config(name, outputs, batch, instances, delay, header))
    (folder / "configs").mkdir()
    (folder / "configs" / f"{PYTHON_CONFIG}.pbtxt").write_text(
        python_config(name, outputs, batch, instances, delay, max_sequence_length, header))
    kind = "onnxruntime_onnx (config.pbtxt) and python backend (configs/python.pbtxt)"
    (folder / "README.md").write_text(readme(name, kind, model, outputs, batch, instances, _python_details(name),
                                             text_names))
    return kind, outputs, config, batch


def _stage_engine(engine: Path, folder: Path, name: str, max_batch_size, instances, delay, text_names, notice):
    from seo_export.backends.tensorrt.manifest import read_manifest
    from seo_export.models import TransformerConfig

    manifest = read_manifest(engine)
    if manifest is None:
        raise UsageError(f"{engine} is neither an .onnx file nor an engine with a manifest ({engine.name}.json): "
                         "build engines with `seo-export build`, which writes the manifest")
    if sha256_file(engine) != manifest.engine_sha256:
        raise UsageError(f"{engine} does not match its manifest (sha256 differs): rebuild it with `seo-export build`")
    outputs = _engine_outputs(engine, manifest, notice)
    header = _header(engine, manifest.engine_sha256)
    config_text = engine_config(manifest, name, max_batch_size, instances, outputs, delay, header)
    batch = int(re.search(r"^max_batch_size: (\d+)$", config_text, re.MULTILINE).group(1))
    (folder / VERSION).mkdir(parents=True)
    _place(engine, folder / VERSION / "model.plan")
    (folder / "config.pbtxt").write_text(config_text)
    kind = "tensorrt_plan"
    shown = outputs or [Tensor(n, "TYPE_?", (-1,)) for n in ("last_hidden_state", "pooler_output")]
    (folder / "README.md").write_text(readme(name, kind, engine, shown, batch, instances, _engine_details(manifest),
                                             text_names))
    config = TransformerConfig.from_dict(manifest.model_config) if manifest.model_config else None
    if text_names and outputs is None:
        raise UsageError("--tokenizer needs the engine's outputs for the text ensemble: put the ONNX file it was built "
                         f"from ({manifest.onnx_file}) beside the engine")
    return kind, outputs, config, batch


def _stage_text(tokenizer_dir: Path, staging: Path, name: str, text_names, outputs, config, batch, instances,
                truncate, max_sequence_length=None):
    from seo_export.text import load_tokenizer, model_limit, tightest

    tok = load_tokenizer(tokenizer_dir)
    cap = (max_sequence_length, f"--max-seq-len is {max_sequence_length}") if max_sequence_length else None
    limit = tightest([model_limit(config), tok.limit, cap])
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and tok.vocab_size > vocab_size:
        raise UsageError(f"the tokenizer {tok.path} has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{vocab_size}: they do not belong together")
    pad_id = tok.pad_id if tok.pad_id is not None else getattr(config, "pad_token_id", None)
    tokenizer_name, text_name = text_names
    version = staging / tokenizer_name / VERSION
    version.mkdir(parents=True)
    shutil.copyfile(tok.path, version / "tokenizer.json")
    for side in ("tokenizer_config.json", "special_tokens_map.json"):  # kept for reference; the settings file rules
        if (tok.path.parent / side).is_file():
            shutil.copyfile(tok.path.parent / side, version / side)
    settings = {"format": "seo-export-triton-tokenizer", "seo_export_version": __version__,
                "tokenizer_file": "tokenizer.json", "pad_id": pad_id,
                "max_length": limit[0] if limit else None, "limit_reason": limit[1] if limit else "",
                "vocab_size": vocab_size}
    (version / tokenizer_model.SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    shutil.copyfile(tokenizer_model.__file__, version / "model.py")
    header = [f"Written by seo-export {__version__} (seo-export triton-repo --tokenizer {tokenizer_dir.name})."]
    (staging / tokenizer_name / "config.pbtxt").write_text(tokenizer_config(tokenizer_name, batch, instances, truncate,
                                                                            header))
    (staging / text_name / VERSION).mkdir(parents=True)  # an ensemble has an empty version folder
    (staging / text_name / "config.pbtxt").write_text(ensemble_config(text_name, name, tokenizer_name, outputs, batch,
                                                                      header))
