"""The round-trip checker is trusted only once seen to fail: each fault a tool could make is caught."""

from __future__ import annotations

import onnx
import onnx.helper as oh
import onnx.numpy_helper
import pytest

from seo_export.export.functions import base_op, function_proto, op_type_for
from seo_export.export.postprocess import default_opset, seo_nodes
from seo_export.export.toolchain import contract_problems
from tests.toolchain.round_trips import ROUND_TRIPS, check_round_trip, graphsurgeon, ort_outputs

LOCAL, SPARSE = ("local", "rotary", False), ("sparse", "learned", False)


def old_value_float_constants(model, _):
    """The function bodies as written before issue 12: float literals as value_float attributes."""
    for function in model.functions:
        for node in function.node:
            if node.op_type == "Constant" and node.attribute[0].name == "value" and node.attribute[0].t.data_type == 1:
                value = float(onnx.numpy_helper.to_array(node.attribute[0].t))
                del node.attribute[:]
                node.attribute.append(oh.make_attribute("value_float", value))
    return model


def old_no_bias_wiring(model, _):
    """Before issue 12 a zero bias stand-in got the body that never reads rel_bias."""
    for node in seo_nodes(model):
        node.overload = "no_bias"
        node.op_type = op_type_for(base_op(node.op_type), "no_bias")
    ops = {base_op(f.name) for f in model.functions}
    del model.functions[:]
    model.functions.extend(function_proto(op, "no_bias", default_opset(model)) for op in sorted(ops))
    return model


def then(first, second):
    return lambda model, workdir: second(first(model, workdir), workdir)


def check(exports, tmp_path, variant, precision, trip, losses=frozenset()):
    path = exports(variant, precision)
    return check_round_trip(trip, set(losses), onnx.load(path), ort_outputs(path), precision, tmp_path)


@pytest.mark.parametrize("variant", [LOCAL, SPARSE], ids=["local", "sparse"])
def test_old_value_float_constants_come_back_as_double_and_are_caught(exports, tmp_path, variant):
    pytest.importorskip("onnx_graphsurgeon")
    problems = check(exports, tmp_path, variant, "fp32", then(old_value_float_constants, graphsurgeon),
                     ROUND_TRIPS["graphsurgeon"][1])
    assert any("refuses" in p and "double" in p for p in problems), problems


def test_bodies_that_leave_an_input_unread_are_broken_by_onnxslim_and_caught(exports, tmp_path):
    pytest.importorskip("onnxslim")
    trip = then(old_no_bias_wiring, ROUND_TRIPS["onnxslim"][0])
    problems = check(exports, tmp_path, LOCAL, "fp32", trip, {"overload"})
    assert any("refuses" in p for p in problems), problems


def drop_functions(model, _):
    del model.functions[:]
    return model


def drop_plugin_namespace(model, _):
    for node in seo_nodes(model):
        kept = [a for a in node.attribute if a.name != "plugin_namespace"]
        del node.attribute[:]
        node.attribute.extend(kept)
    return model


def scale_one_node(model, _):
    """1% on one seo node's scale: small next to any real fault, far outside the round-trip rules."""
    next(a for a in seo_nodes(model)[0].attribute if a.name == "scale").f *= 1.01
    return model


def test_a_tool_that_drops_the_bodies_is_reported(exports, tmp_path):
    problems = check(exports, tmp_path, SPARSE, "fp16", drop_functions)
    assert any(p.startswith("ort: ") for p in problems) and any("no body" in p for p in problems), problems


def test_a_tool_that_drops_a_plugin_attribute_is_reported_and_refused_by_the_build(exports, tmp_path):
    problems = check(exports, tmp_path, LOCAL, "fp16", drop_plugin_namespace)
    assert any("seo nodes:" in p for p in problems), problems
    assert any(p.startswith("build checks: refused") and "plugin_namespace" in p for p in problems), problems


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", [LOCAL, SPARSE], ids=["local", "sparse"])
def test_changed_outputs_are_caught_by_both_precision_rules(exports, tmp_path, variant, precision):
    problems = check(exports, tmp_path, variant, precision, scale_one_node)
    assert any(p.startswith("outputs: last_hidden_state") for p in problems), problems


def test_a_tool_that_inlines_the_seo_nodes_loses_them_and_the_build_refuses_it(exports, tmp_path):
    """A tool expected to keep the nodes (onnxsim) but inlining them instead is reported."""
    from seo_export.export.postprocess import decompose

    problems = check(exports, tmp_path, LOCAL, "fp32", lambda model, _: decompose(model))
    assert any(p.startswith("contract:") and "seo nodes" in p for p in problems), problems
    assert any(p.startswith("build checks: refused") and "none left" in p for p in problems), problems


def test_restore_puts_back_what_sanitize_drops(exports):
    pytest.importorskip("polygraphy")
    from seo_export.export.toolchain import restore, run_tool

    original = onnx.load(exports(LOCAL, "fp16"))
    result = run_tool("polygraphy", onnx.load(exports(LOCAL, "fp16")))
    assert {p.split(":")[0] for p in contract_problems(result, original)} == {"metadata", "overload"}
    assert restore(result, original) == [f"{len(original.metadata_props)} metadata entries",
                                         "overload LocalWindowAttention_zero_bias[zero_bias]"]
    assert contract_problems(result, original) == []
