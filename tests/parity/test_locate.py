"""The break search's pieces: internal names, the module they map to, and the first failure."""

import numpy as np
import pytest

from seo_export.export.internals import describe_module, internal_names, module_of
from seo_export.parity.locate import first_failure
from seo_export.parity.report import make_break
from seo_export.parity.tolerance import check_fp32


def test_internal_names_follow_graph_order_and_module_names():
    assert internal_names(2) == ("embeddings.output", "layers.0.attention.output", "layers.0.output",
                                 "layers.1.attention.output", "layers.1.output")


@pytest.mark.parametrize("internal,module,layer,block", [
    ("embeddings.output", "embeddings", None, "embeddings"),
    ("layers.0.attention.output", "layers.0.attention", 0, "attention"),
    ("layers.11.output", "layers.11", 11, "feed_forward"),
])
def test_each_internal_names_the_module_keep_fp32_takes(internal, module, layer, block):
    assert module_of(internal) == module
    assert describe_module(module) == (layer, block)
    assert make_break(module)["layer"] == layer


def judge(name, actual, expected):
    return check_fp32(actual, expected, atol=1e-4, rtol=0.0)


@pytest.mark.parametrize("broken_from", range(5))
def test_first_failure_is_the_earliest_internal_out_of_tolerance(broken_from):
    names = internal_names(2)
    eager = {name: np.full((1, 3, 4), i, dtype=np.float32) for i, name in enumerate(names)}
    backend = {name: value + (1.0 if i >= broken_from else 0.0) for i, (name, value) in enumerate(eager.items())}
    module, verdict = first_failure(judge, backend, eager, {n: n for n in names}, 2)
    assert module == module_of(names[broken_from]) and not verdict.passed


def test_first_failure_reads_promoted_names_through_the_mapping_and_passes_when_all_do():
    names = internal_names(1)
    eager = {name: np.zeros((1, 2, 4), dtype=np.float32) for name in names}
    graph = {f"g{i}": np.zeros((1, 2, 4), dtype=np.float32) for i in range(len(names))}
    mapping = {name: f"g{i}" for i, name in enumerate(names)}
    assert first_failure(judge, graph, eager, mapping, 1) is None
    graph["g2"] = graph["g2"] + 1.0  # the last internal: the layer's output
    assert first_failure(judge, graph, eager, mapping, 1)[0] == "layers.0"
