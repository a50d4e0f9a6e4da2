"""Triton python-backend model: an seo-export ONNX file on ONNX Runtime.

``seo-export triton-repo`` copies this file as ``MODEL/1/model.py`` beside ``model.onnx`` and
``seo_export_model.json`` (the session settings and input limits it wrote). It needs numpy and
onnxruntime only — not torch, not seo-export — so the repository runs in any Triton python backend
whose Python has them. The session is set up as ``seo_export.backends.ort_runner.create_session``
sets it up; the settings file holds those settings as seo-export had them when it wrote the
repository.

Each request is checked before anything runs (both inputs present, int64, rank 2, the same shape, a
sequence within the model's limit, ids inside the vocabulary, a 0/1 mask); a bad request gets an
error response that says what is wrong, and the others in the same batch still run. Requests of the
same shape are concatenated and run as one batch (Triton's dynamic batcher hands them over together),
then split again.
"""

import json
import os
from pathlib import Path

import numpy as np

SETTINGS_FILE = "seo_export_model.json"
INPUTS = ("input_ids", "attention_mask")


def check_request(feeds, max_sequence_length=None, vocab_size=None):
    """None when the request's inputs can run, else one line saying what is wrong."""
    for name in INPUTS:
        if feeds.get(name) is None:
            return f"missing input {name}"
    shapes = {}
    for name in INPUTS:
        array = feeds[name]
        if array.dtype != np.int64:
            return f"{name} must be INT64, got {array.dtype}"
        if array.ndim != 2:
            return f"{name} must be [batch, sequence] (rank 2), got shape {list(array.shape)}"
        shapes[name] = array.shape
    if shapes["input_ids"] != shapes["attention_mask"]:
        return (f"input_ids {list(shapes['input_ids'])} and attention_mask {list(shapes['attention_mask'])} "
                "must have the same shape")
    batch, sequence = shapes["input_ids"]
    if batch < 1 or sequence < 1:
        return f"empty input: shape {list(shapes['input_ids'])}"
    if max_sequence_length is not None and sequence > max_sequence_length:
        return f"sequence length {sequence} is over the model's limit of {max_sequence_length} tokens"
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bad = low if low < 0 else high
        return f"input_ids holds token id {bad}, outside the vocabulary [0, {vocab_size})"
    if not np.isin(mask, (0, 1)).all():
        return "attention_mask must hold only 0 and 1"
    return None


def session_options(settings, threads=0):
    """ONNX Runtime SessionOptions from the settings file (``session`` part)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = int(settings.get("log_severity_level", 3))
    for key, value in settings.get("config_entries", {}).items():
        options.add_session_config_entry(key, str(value))
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


def create_session(model_path, settings, providers, threads=0):
    import onnxruntime as ort

    cpu_only = [p if isinstance(p, str) else p[0] for p in providers] == ["CPUExecutionProvider"]
    disabled = settings.get("cpu_disabled_optimizers", []) if cpu_only else []
    return ort.InferenceSession(str(model_path), session_options(settings, threads), providers=providers,
                                disabled_optimizers=list(disabled))


def _instance_count(model_config, instance_name):
    """How many instances of this model share the host (every instance group of this model)."""
    groups = model_config.get("instance_group") or [{"count": 1}]
    return max(1, sum(int(g.get("count", 1)) for g in groups))


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def invalid_argument(pb_utils, message):
    """A TritonError with code INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT) where the backend has codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        here = Path(__file__).resolve().parent
        self.model_config = json.loads(args["model_config"])
        self.settings = json.loads((here / SETTINGS_FILE).read_text())
        parameters = {k: v.get("string_value", "") for k, v in (self.model_config.get("parameters") or {}).items()}
        threads = int(parameters.get("intra_op_threads") or 0)
        if threads <= 0:  # the host's cores shared by this model's instances, as ORT would otherwise take them all
            threads = max(1, _cpus() // _instance_count(self.model_config, args.get("model_instance_name")))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id", 0))}),
                         "CPUExecutionProvider"]
        self.session = create_session(here / self.settings["model_file"], self.settings["session"], providers, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        limit = parameters.get("max_sequence_length") or self.settings.get("max_sequence_length")
        self.max_sequence_length = int(limit) if limit else None
        self.vocab_size = self.settings.get("vocab_size")

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = [None] * len(requests)
        groups = {}  # (shape without batch) -> [(index, feeds, wanted outputs)]
        for index, request in enumerate(requests):
            feeds = {}
            for name in INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                feeds[name] = None if tensor is None else tensor.as_numpy()
            problem = check_request(feeds, self.max_sequence_length, self.vocab_size)
            if problem is not None:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[],
                                                              error=invalid_argument(pb_utils, problem))
                continue
            wanted = [n for n in (request.requested_output_names() or self.output_names) if n in self.output_names]
            groups.setdefault(feeds["input_ids"].shape[1:], []).append((index, feeds, wanted or self.output_names))
        for members in groups.values():
            try:
                outputs = self._run([feeds for _, feeds, _ in members])
            except Exception as exc:  # a failed run answers its requests; the instance keeps serving
                message = f"ONNX Runtime failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                for index, _, _ in members:
                    responses[index] = pb_utils.InferenceResponse(output_tensors=[],
                                                                  error=pb_utils.TritonError(message))
                continue
            start = 0
            for index, feeds, wanted in members:
                rows = feeds["input_ids"].shape[0]
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(outputs[name][start:start + rows]))
                           for name in wanted]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += rows
        return responses

    def _run(self, feeds_list):
        if len(feeds_list) == 1:
            feeds = feeds_list[0]
        else:
            feeds = {name: np.concatenate([f[name] for f in feeds_list], axis=0) for name in INPUTS}
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values))

    def finalize(self):
        self.session = None
