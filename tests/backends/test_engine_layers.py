"""Reading TensorRT's engine inspector JSON: seo plugin layers, or attention inlined into plain layers.

The samples follow the inspector's documented layout for engines built with
ProfilingVerbosity.DETAILED (TensorRT 10: ``Bindings``; 11 replaces it with ``I/O Tensors``, which
is not read here). Layer and node names are those of a 2-layer local-attention export.
"""

import json
import types

import pytest
from onnx import helper

from seo_export.backends.tensorrt.builder import configure, count_seo_plugin_layers
from seo_export.backends.tensorrt.layers import EngineLayer, parse_engine_layers, seo_plugin_layers

SEO_NODES = ["node_local_window_attention", "node_local_window_attention_1"]
SEP = "\x1e"  # the inspector joins a fused layer's ONNX nodes with this control character


def tensor(name, dims, fmt="Row major linear FP16 format (kLINEAR)"):
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


def layer(name, layer_type, nodes, **fields):
    return {"Name": name, "LayerType": layer_type, "Inputs": [tensor(f"{name}_in", [-1, -1, 64])],
            "Outputs": [tensor(f"{name}_out", [-1, -1, 64])], "ParameterType": fields.pop("ParameterType", layer_type),
            "Metadata": SEP.join(f"[ONNX Layer: {n}]" for n in nodes), "TacticValue": "0x0000000000000000",
            "StreamId": 0, **fields}


def plugin_layer(node, namespace="seo", plugin="LocalWindowAttention"):
    fields = {"PluginType": plugin, "PluginVersion": "1"}
    if namespace is not None:
        fields["PluginNamespace"] = namespace
    return layer(node, "PluginV3", [node], **fields)


def engine_json(attention_layers):
    layers = [layer("node_embedding", "Gather", ["node_embedding"], Mode="DEFAULT", Axis=0),
              layer("__myl_MulAddResh_myl0_3", "kgen", ["node_linear", "node_add_21", "node_view"],
                    TacticName="__myl_MulAddResh_0x6a1f4c2d8e0b")]
    layers += attention_layers
    layers.append(layer("node_tanh", "PointWiseV2", ["node_linear_6", "node_tanh"]))
    return json.dumps({"Layers": layers, "Bindings": ["input_ids", "attention_mask", "last_hidden_state",
                                                     "pooler_output"]})


WITH_PLUGINS = engine_json([plugin_layer(node) for node in SEO_NODES])
# Without the plugins the parser imports each node's function body: plain layers made from it.
INLINED = engine_json([
    layer(f"__myl_MatMulMulSoftMatMul_{i}", "kgen", [f"{node}/node_MatMul_2", f"{node}/node_Softmax_5", node],
          TacticName=f"__myl_MatMulMulSoftMatMul_0x{i}f3a")
    for i, node in enumerate(SEO_NODES)
] + [layer(f"{SEO_NODES[0]}/node_Where_7", "Select", [SEO_NODES[0]])])


def test_layers_are_read_in_order_with_their_types():
    layers = parse_engine_layers(WITH_PLUGINS)
    assert [(entry.name, entry.layer_type) for entry in layers] == [
        ("node_embedding", "Gather"), ("__myl_MulAddResh_myl0_3", "kgen"),
        (SEO_NODES[0], "PluginV3"), (SEO_NODES[1], "PluginV3"), ("node_tanh", "PointWiseV2")]
    assert layers[1].onnx_nodes == ("node_linear", "node_add_21", "node_view")
    assert layers[2].plugin_namespace == "seo" and layers[0].plugin_namespace is None


def test_an_engine_with_the_plugins_has_one_seo_plugin_layer_per_node():
    found = seo_plugin_layers(parse_engine_layers(WITH_PLUGINS), SEO_NODES)
    assert [entry.name for entry in found] == SEO_NODES
    # The inspector's namespace is enough on its own; node names are only a fallback.
    assert seo_plugin_layers(parse_engine_layers(WITH_PLUGINS)) == found


def test_inlined_attention_has_no_seo_plugin_layers():
    layers = parse_engine_layers(INLINED)
    assert len(layers) == 6 and not any(entry.is_plugin for entry in layers)
    assert seo_plugin_layers(layers, SEO_NODES) == []  # made from the seo nodes, but not plugin kernels


def test_only_plugins_of_the_seo_namespace_count():
    layers = parse_engine_layers(engine_json([
        plugin_layer(SEO_NODES[0]),
        plugin_layer("node_instance_norm", namespace="", plugin="InstanceNormalization_TRT"),
        plugin_layer(SEO_NODES[1], namespace="other"),  # an seo node served by someone else's plugin
        # A V2 plugin layer whose JSON names no namespace: its ONNX node decides.
        layer("node_local_window_attention_2", "PluginV2", ["node_local_window_attention_2"]),
        layer("node_custom", "PluginV2", ["node_custom"]),
    ]))
    found = seo_plugin_layers(layers, [*SEO_NODES, "node_local_window_attention_2"])
    assert [entry.name for entry in found] == [SEO_NODES[0], "node_local_window_attention_2"]


def test_layer_names_only_engines_cannot_tell_and_say_why():
    names_only = json.dumps({"Layers": ["node_embedding", SEO_NODES[0], "node_tanh"], "Bindings": []})
    with pytest.raises(ValueError, match="without their types; build it with ProfilingVerbosity.DETAILED"):
        parse_engine_layers(names_only)
    with pytest.raises(ValueError, match="no Layers list"):
        parse_engine_layers("{}")


def test_a_layer_knows_whether_it_is_a_plugin():
    assert EngineLayer("a", "PluginV2").is_plugin and EngineLayer("a", "PluginV3").is_plugin
    assert not EngineLayer("a", "kgen").is_plugin


def test_the_builder_asks_for_detailed_layer_information():
    trt = types.SimpleNamespace(ProfilingVerbosity=types.SimpleNamespace(DETAILED="detailed", LAYER_NAMES_ONLY="names"),
                                MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"))
    pools = {}
    config = types.SimpleNamespace(profiling_verbosity=trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
                                   set_memory_pool_limit=pools.__setitem__)
    configure(trt, config, workspace=1 << 30)
    assert config.profiling_verbosity == "detailed" and pools == {"workspace": 1 << 30}


def fake_tensorrt(plans: dict[bytes, str]):
    """Just what counting needs: a runtime that deserializes ``plans`` into engines whose inspector gives their JSON."""
    def engine(plan):
        info = plans[plan]
        inspector = types.SimpleNamespace(get_engine_information=lambda fmt: info if fmt == "JSON" else "")
        return types.SimpleNamespace(create_engine_inspector=lambda: inspector)

    return types.SimpleNamespace(LayerInformationFormat=types.SimpleNamespace(JSON="JSON"),
                                 Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=engine))


def test_the_build_counts_the_engines_seo_plugin_layers():
    nodes = [helper.make_node("LocalWindowAttention", ["q", "k", "v"], [f"out{i}"], name=name, domain="seo")
             for i, name in enumerate(SEO_NODES)]
    model = helper.make_model(helper.make_graph(nodes, "seo", [], []))
    trt = fake_tensorrt({b"plugins": WITH_PLUGINS, b"inlined": INLINED,
                         b"names": json.dumps({"Layers": SEO_NODES})})
    logger = types.SimpleNamespace(warnings=[])
    assert count_seo_plugin_layers(trt, logger, b"plugins", model) == 2
    assert count_seo_plugin_layers(trt, logger, b"inlined", model) == 0
    assert count_seo_plugin_layers(trt, logger, b"names", model) is None
    assert logger.warnings == ["cannot count the engine's seo plugin layers: the engine lists its layers without "
                               "their types; build it with ProfilingVerbosity.DETAILED (seo-export build does)"]
    plain = helper.make_model(helper.make_graph([], "plain", [], []))
    assert count_seo_plugin_layers(None, logger, b"never deserialized", plain) == 0
