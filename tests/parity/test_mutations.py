"""Mutation tests: every fault validate exists to catch, injected on purpose, is caught.

A check is trusted only once it has been seen to fail. Faults on ``seo::`` nodes are written into
an exported file, as a miswired exporter would write them; faults in dense attention are patched
into the model only while it is exported, so the eager reference stays right. Each fault must
fail validate under both the FP32 and the FP16 rule, on models with peaked attention (the
default 0.02 init hides most of these faults under FP16 rounding).
"""

from __future__ import annotations

import functools

import onnx
import pytest
import torch

from seo_export import TransformerConfig
from seo_export.export import export_onnx, postprocess
from seo_export.models.attention import dense
from seo_export.models.attention.dense import AttentionWithRelativePositions, MultiHeadAttention
from seo_export.models.build import build_model, weights_provenance
from seo_export.parity.cases import make_cases
from seo_export.parity.validate import Tolerances, Validator, file_run

SMALL = TransformerConfig(
    hidden_size=32, num_layers=2, num_heads=4, vocab_size=100, intermediate_size=64, dropout_rate=0.0,
    attention_dropout=0.0, attention_window_size=8, attention_num_landmarks=4, attention_max_relative_position=4,
    positional_encoding_max_relative_position=4, positional_encoding_max_len=128,
)
PRECISIONS = ("fp32", "fp16")


def variant_config(attention: str, positional: str, causal: bool = False) -> TransformerConfig:
    return SMALL.replace(attention_type=attention, positional_encoding_type=positional, use_causal_mask=causal)


def export_variant(directory, variant, precision: str, name: str = "honest"):
    config = variant_config(*variant)
    path = directory / f"{'-'.join(map(str, variant))}-{precision}-{name}.onnx"
    export_onnx(build_model(config, 0, init="peaked"), path, precision=precision,
                weights=weights_provenance(0, None, "peaked"))
    return path


def validate_file(path, workdir) -> list[dict]:
    """validate --model on one file, over the edge-case lengths, without the break search."""
    run = file_run(path, None)
    backend = f"ort-{run.file_options['precision']}"
    cases = make_cases(run.config, batch=3, max_len=40)
    return Validator([backend], Tolerances(), workdir, find_break=False).run([run], lambda c: cases).results


def case_id(value) -> str:
    if isinstance(value, tuple):
        attention, positional, causal = value
        return f"{attention}-{positional}" + ("-causal" if causal else "")
    return value.__name__


def all_passed(results: list[dict]) -> bool:
    return bool(results) and all(r["verdict"]["passed"] for r in results)


# ----------------------------------------------------------------------------- faults on seo nodes

def swap_q_k(model: onnx.ModelProto) -> None:
    for node in postprocess.seo_nodes(model):
        node.input[0], node.input[1] = node.input[1], node.input[0]


def scale_off_by_a_quarter(model: onnx.ModelProto) -> None:
    for node in postprocess.seo_nodes(model):
        next(a for a in node.attribute if a.name == "scale").f *= 1.25


def flip_bias_sign(model: onnx.ModelProto) -> None:
    nodes = list(model.graph.node)
    for node in postprocess.seo_nodes(model):
        flipped = node.input[4] + "_flipped"
        if not any(flipped in n.output for n in nodes):  # layers share one bias table
            nodes.insert(nodes.index(node), onnx.helper.make_node("Neg", [node.input[4]], [flipped]))
        node.input[4] = flipped
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def causal_window_one_too_wide(model: onnx.ModelProto) -> None:
    for node in postprocess.seo_nodes(model):
        next(a for a in node.attribute if a.name == "window_left").i += 1


SEO_FAULTS = [
    (("local", "relative", False), swap_q_k),
    (("local", "relative", False), scale_off_by_a_quarter),
    (("local", "relative", False), flip_bias_sign),
    (("local", "rotary", True), causal_window_one_too_wide),
    (("sparse", "relative", False), swap_q_k),
    (("sparse", "relative", False), scale_off_by_a_quarter),
    (("sparse", "relative", False), flip_bias_sign),
]


@pytest.fixture(scope="module")
def honest_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("honest")
    return functools.lru_cache(maxsize=None)(lambda variant, precision: export_variant(directory, variant, precision))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant", sorted({v for v, _ in SEO_FAULTS}), ids=lambda v: case_id(v))
def test_honest_files_pass(honest_files, tmp_path, variant, precision):
    """The control: without a fault the same files pass, so a failure below is the fault's."""
    assert all_passed(validate_file(honest_files(variant, precision), tmp_path))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant,fault", SEO_FAULTS, ids=case_id)
def test_seo_node_fault_fails_validate(honest_files, tmp_path, variant, fault, precision):
    model = onnx.load_model(str(honest_files(variant, precision)))
    before = model.SerializeToString()
    fault(model)
    assert model.SerializeToString() != before, "the fault changed nothing"
    path = tmp_path / "faulty.onnx"
    onnx.save_model(model, str(path))
    results = validate_file(path, tmp_path)
    assert results and not all_passed(results), f"{fault.__name__} passed validate ({precision})"


# ----------------------------------------------------------------------------- faults in dense attention

def _swapped_logits(original):
    return lambda self, q, k, query_plain: original(self, k, q, query_plain)


def _scaled_logits(original):
    return lambda self, q, k, query_plain: original(self, q, k, query_plain) * 1.25


DENSE_FAULTS = {
    "swap_q_k": (("relative", "sinusoidal", False), [
        (MultiHeadAttention, "logits", _swapped_logits(MultiHeadAttention.logits)),
        (AttentionWithRelativePositions, "logits", _swapped_logits(AttentionWithRelativePositions.logits))]),
    "scale_off_by_a_quarter": (("standard", "sinusoidal", False), [
        (MultiHeadAttention, "logits", _scaled_logits(MultiHeadAttention.logits))]),
    "flip_bias_sign": (("standard", "relative", False), [
        (dense, "bias_logits", lambda *args, original=dense.bias_logits: -original(*args))]),
    "causal_mask_one_too_wide": (("standard", "rotary", True), [
        (dense, "relative_positions", lambda q, k, device=None, original=dense.relative_positions:
         original(q, k, device) - 1)]),
}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("fault", sorted(DENSE_FAULTS))
def test_dense_attention_fault_fails_validate(tmp_path, monkeypatch, fault, precision):
    variant, patches = DENSE_FAULTS[fault]
    assert all_passed(validate_file(export_variant(tmp_path, variant, precision), tmp_path))  # control
    with monkeypatch.context() as patched:
        for owner, name, replacement in patches:
            patched.setattr(owner, name, replacement)
        path = export_variant(tmp_path, variant, precision, fault)
    results = validate_file(path, tmp_path)
    assert results and not all_passed(results), f"{fault} passed validate ({precision})"


def test_peaked_init_is_what_makes_faults_visible():
    """The sweep's init: attention rows far from uniform (the default init is within a few % of it)."""
    config = variant_config("standard", "sinusoidal")
    ids = torch.randint(1, config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    peaks = {}
    for init in ("default", "peaked"):
        with torch.no_grad():
            attentions = build_model(config, 0, init=init)(ids, output_attentions=True)["attentions"]
        peaks[init] = min(float(a.max(-1).values.mean()) for a in attentions)
    assert peaks["default"] < 2 / 40 < 0.15 < peaks["peaked"], peaks
