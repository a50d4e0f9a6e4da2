"""The break search and the FP32-island probe, on a fault whose place and cure are known.

The fault: an FP16-only error in one block (the logits of ``layers.1.attention`` scaled by 1.25
while the FP16 graph is exported), as a wrong FP16 kernel would make it. Keeping that block in
FP32 removes it, so the search must name exactly that block and the probe must find the fix.
Each of the two checks is then seen to fail under the fault it exists for.
"""

from __future__ import annotations

import copy

import pytest
import torch

from seo_export import TransformerConfig
from seo_export.export import export_onnx
from seo_export.models.attention.dense import MultiHeadAttention
from seo_export.parity import locate, validate
from seo_export.parity.cases import make_cases
from seo_export.parity.validate import Tolerances, Validator, VariantRun

FAULTY = "layers.1.attention"
CONFIG = TransformerConfig(hidden_size=32, num_layers=3, num_heads=4, vocab_size=100, intermediate_size=64,
                           dropout_rate=0.0, attention_dropout=0.0, positional_encoding_max_len=64)


@pytest.fixture
def fp16_fault_in_one_block(monkeypatch):
    """Every export validate makes gets the fault in FAULTY, in its FP16 parts only."""
    logits = MultiHeadAttention.logits

    def faulty_logits(self, q, k, query_plain):
        out = logits(self, q, k, query_plain)
        return out * 1.25 if q.dtype == torch.float16 and getattr(self, "fp16_fault", False) else out

    def export_with_fault(model, *args, **kwargs):
        model = copy.deepcopy(model)
        model.get_submodule(FAULTY).fp16_fault = True
        return export_onnx(model, *args, **kwargs)

    monkeypatch.setattr(MultiHeadAttention, "logits", faulty_logits)
    monkeypatch.setattr(validate, "export_onnx", export_with_fault)


def located_break(workdir) -> dict:
    cases = make_cases(CONFIG, batch=2, max_len=24)[-1:]
    (result,) = Validator(["ort-fp16"], Tolerances(), workdir).run([VariantRun(CONFIG)], lambda c: cases).results
    assert not result["verdict"]["passed"], "the injected fault went unseen"
    return result["break"]


def check_break_and_cure(workdir) -> None:
    brk = located_break(workdir)
    assert brk["module"] == FAULTY and brk["layer"] == 1 and brk["block"] == "attention"
    assert brk["fixed_by_fp32"] is True and brk["flag"] == f"--keep-fp32 {FAULTY}"


def test_search_names_the_faulty_block_and_keeping_it_in_fp32_fixes_it(fp16_fault_in_one_block, tmp_path):
    check_break_and_cure(tmp_path)


def test_an_off_by_one_search_is_caught(fp16_fault_in_one_block, tmp_path, monkeypatch):
    first_failure = locate.first_failure

    def one_late(judge, values, expected, mapping, layers):
        module, verdict = first_failure(judge, values, expected, mapping, layers)
        modules = [name.removesuffix(".output") for name in locate.internal_names(layers)]
        return modules[modules.index(module) + 1], verdict

    monkeypatch.setattr(locate, "first_failure", one_late)
    with pytest.raises(AssertionError):
        check_break_and_cure(tmp_path)


def test_a_keep_fp32_that_keeps_nothing_is_caught(fp16_fault_in_one_block, tmp_path, monkeypatch):
    monkeypatch.setattr("seo_export.export.exporter.keep_in_fp32", lambda *args, **kwargs: None)
    with pytest.raises(AssertionError):
        check_break_and_cure(tmp_path)
