"""Triton python-backend model: texts to ``input_ids`` / ``attention_mask`` with a checkpoint's own tokenizer.

``seo-export triton-repo --tokenizer DIR`` copies this file as ``MODEL_tokenizer/1/model.py`` beside
the checkpoint's ``tokenizer.json`` and ``seo_export_tokenizer.json`` (pad id, length limit,
vocabulary size); the ensemble ``MODEL_text`` feeds its outputs to ``MODEL``. It needs numpy and the
``tokenizers`` library only.

A request's texts are encoded as ``seo-export run --text`` encodes them (``seo_export.text.encode``,
transformers' ``padding=True``): special tokens from the tokenizer's post-processor, right padding to
the request's longest text with the pad id, attention_mask 1/0, int64. A text over the limit (the
tightest of the model's and the tokenizer's) is refused unless the configuration parameter
``truncate`` is "true"; an empty text, or ids past the model's vocabulary, are refused too, each with
an error response naming the text.
"""

import json
from pathlib import Path

import numpy as np

SETTINGS_FILE = "seo_export_tokenizer.json"


def load(here, settings):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(here) / settings["tokenizer_file"]))
    tokenizer.no_truncation()  # what tokenizer.json stores is ignored, as transformers does per call
    tokenizer.no_padding()
    return tokenizer


def encode(tokenizer, texts, settings, truncate=False):
    """(feeds, None) or (None, one line saying what is wrong)."""
    if not texts:
        return None, "no text in the request"
    for i, text in enumerate(texts):
        if not text.strip():
            return None, f"text {i + 1} is empty"
    limit, reason = settings.get("max_length"), settings.get("limit_reason", "")
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    lengths = [len(e.ids) for e in encodings]
    too_long = [i for i, n in enumerate(lengths) if limit is not None and n > limit]
    if too_long and not truncate:
        i = too_long[0]
        return None, f"text {i + 1} has {lengths[i]} tokens; {reason}"
    if too_long:
        specials = tokenizer.num_special_tokens_to_add(is_pair=False)
        if limit <= specials:
            return None, f"{reason}, which leaves no room for text besides the {specials} special tokens"
        tokenizer.enable_truncation(max_length=limit)
        try:
            encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
        finally:
            tokenizer.no_truncation()
    longest = max(len(e.ids) for e in encodings)
    pad_id = settings.get("pad_id")
    if pad_id is None and any(len(e.ids) < longest for e in encodings):
        return None, "the texts need padding, but the tokenizer names no pad token"
    input_ids = np.full((len(encodings), longest), pad_id or 0, dtype=np.int64)
    attention_mask = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        input_ids[row, :len(encoding.ids)] = encoding.ids
        attention_mask[row, :len(encoding.ids)] = 1
    vocab_size = settings.get("vocab_size")
    if vocab_size is not None and input_ids.max() >= vocab_size:
        row = int(np.argwhere(input_ids >= vocab_size)[0][0])
        return None, (f"text {row + 1} has token id {int(input_ids[row].max())}, "
                      f"past the model's vocab_size {vocab_size}")
    return {"input_ids": input_ids, "attention_mask": attention_mask}, None


def decode_texts(array):
    """A BYTES tensor's elements as str, in row order; a non-UTF-8 element is an error."""
    texts = []
    for i, item in enumerate(np.asarray(array, dtype=object).reshape(-1)):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"text {i + 1} is not UTF-8") from None
        texts.append(str(item))
    return texts


def invalid_argument(pb_utils, message):
    """A TritonError with code INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT) where the backend has codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        here = Path(__file__).resolve().parent
        self.settings = json.loads((here / SETTINGS_FILE).read_text())
        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        self.truncate = parameters.get("truncate", "false").strip().lower() in ("1", "true", "yes")
        self.tokenizer = load(here, self.settings)

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "text")
            try:
                texts = decode_texts(tensor.as_numpy()) if tensor is not None else []
                feeds, problem = encode(self.tokenizer, texts, self.settings, self.truncate)
            except Exception as exc:  # answer the request, keep the instance serving
                feeds, problem = None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if problem is not None:
                responses.append(pb_utils.InferenceResponse(output_tensors=[],
                                                            error=invalid_argument(pb_utils, problem)))
                continue
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, array) for name, array in feeds.items()]))
        return responses

    def finalize(self):
        self.tokenizer = None
