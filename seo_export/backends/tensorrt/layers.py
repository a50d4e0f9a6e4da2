"""An engine's layers as TensorRT's engine inspector lists them: seo plugin kernels, or inlined function bodies.

With the seo plugins registered, TensorRT's ONNX parser turns each seo node into a plugin
layer; when it does not find them it imports the node's ONNX function body instead, and the
engine builds and runs without the plugin kernels. Only the inspector tells the two apart, and
only for engines built with ``ProfilingVerbosity.DETAILED``: at the default, LAYER_NAMES_ONLY,
``Layers`` is a list of bare names with no ``LayerType``. Reading the inspector's JSON is plain
Python here; ``engine_layers`` is the one call that needs TensorRT.

The JSON (TensorRT 10 and 11) is ``{"Layers": [{"Name", "LayerType", "Metadata", ...}, ...], ...}``;
plugin layers have a ``LayerType`` of ``PluginV2`` or ``PluginV3`` and may name their plugin
(``PluginType``, ``PluginNamespace``). ``Metadata`` names the ONNX nodes a layer came from:
``[ONNX Layer: attn_0]``, several joined by a control character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import NamedTuple

SEO_NAMESPACE = "seo"
_ONNX_NODE = re.compile(r"\[ONNX Layer: ([^\]]*)\]")


class EngineLayer(NamedTuple):
    name: str
    layer_type: str  # "PluginV3", "gemm", "kgen", ... as the inspector spells it
    plugin_namespace: str | None = None  # None: the inspector did not say
    onnx_nodes: tuple[str, ...] = ()  # the ONNX nodes the layer was made from, per its Metadata

    @property
    def is_plugin(self) -> bool:
        return self.layer_type.startswith("Plugin")


def parse_engine_layers(info: str | dict) -> list[EngineLayer]:
    """The layers in ``inspector.get_engine_information(LayerInformationFormat.JSON)``.

    Raises ValueError for an engine built without DETAILED profiling verbosity: its layers have no types.
    """
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        raise ValueError("the engine inspector's JSON has no Layers list")
    parsed = []
    for layer in layers:
        if not isinstance(layer, dict) or "LayerType" not in layer:
            raise ValueError("the engine lists its layers without their types; build it with "
                             "ProfilingVerbosity.DETAILED (seo-export build does)")
        namespace = layer.get("PluginNamespace")
        parsed.append(EngineLayer(str(layer.get("Name", "")), str(layer["LayerType"]),
                                  None if namespace is None else str(namespace),
                                  tuple(_ONNX_NODE.findall(str(layer.get("Metadata", ""))))))
    return parsed


def seo_plugin_layers(layers: Iterable[EngineLayer], seo_node_names: Iterable[str] = ()) -> list[EngineLayer]:
    """The plugin layers of the ``seo`` namespace.

    A plugin layer counts when the inspector names the seo namespace or, where it names no
    namespace, when it was made from one of ``seo_node_names`` (the model's seo nodes). Layers of
    an inlined function body are never plugin layers, so an engine without the kernels has none.
    """
    names = set(seo_node_names)

    def from_seo(layer: EngineLayer) -> bool:
        if layer.plugin_namespace is not None:
            return layer.plugin_namespace == SEO_NAMESPACE
        return layer.name in names or any(node in names for node in layer.onnx_nodes)

    return [layer for layer in layers if layer.is_plugin and from_seo(layer)]


def engine_layers(trt, engine) -> list[EngineLayer]:
    """The layers of a deserialized ``ICudaEngine``, through ``trt.EngineInspector``."""
    inspector = engine.create_engine_inspector()
    return parse_engine_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
