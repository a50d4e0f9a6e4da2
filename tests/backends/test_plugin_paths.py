"""Nodes without an AOT kernel are set to the plugins' JIT path before TensorRT parses the model."""

from __future__ import annotations

import onnx.helper as oh

from seo_export.backends.tensorrt.plugin_paths import mark_jit_nodes
from seo_export.bench.export_scaling import local_node_model, seo_node_model
from seo_export.export.inspect import node_attributes


def landmark_model(num_landmarks: int):
    model = seo_node_model("LandmarkAttention", 64, num_landmarks=num_landmarks, pinv_iterations=6)
    model.graph.node[0].name = "attn_0"
    return model


def test_landmark_nodes_past_the_aot_kernel_go_to_jit_with_a_note():
    model = landmark_model(64)
    notes = mark_jit_nodes(model)
    assert node_attributes(model.graph.node[0])["aot"] == 0
    assert len(notes) == 1 and "node 'attn_0'" in notes[0] and "64 landmarks" in notes[0]
    assert "Python, PyTorch and Triton" in notes[0]


def test_nodes_with_an_aot_kernel_are_left_alone():
    for model in (landmark_model(32), landmark_model(5), local_node_model(64, 64, 64)):
        assert mark_jit_nodes(model) == []
        assert "aot" not in node_attributes(model.graph.node[0])


def test_an_aot_attribute_the_user_set_is_kept():
    model = landmark_model(64)
    model.graph.node[0].attribute.append(oh.make_attribute("aot", 1))
    assert mark_jit_nodes(model) == []
    assert node_attributes(model.graph.node[0])["aot"] == 1
