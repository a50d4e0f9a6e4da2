"""Names of the values every export carries inside its graph, one per module output.

Only the contract outputs are graph outputs; ``validate`` promotes these names to outputs again
to find the first module where a backend leaves tolerance. No torch here: reports read it too.
"""

from __future__ import annotations

#: The graph contract's outputs; ``logits`` only where the model has a classification head.
OUTPUT_NAMES = ("last_hidden_state", "pooler_output")
CONTRACT_OUTPUTS = OUTPUT_NAMES + ("logits",)
#: Outputs without a sequence axis: one row per sample.
PER_SAMPLE_OUTPUTS = ("pooler_output", "logits")


def output_names(config) -> tuple[str, ...]:
    """The graph contract's outputs of a model with this config."""
    return CONTRACT_OUTPUTS if config.num_labels else OUTPUT_NAMES


def internal_names(num_layers: int) -> tuple[str, ...]:
    """In graph order, each named after the module that produces it (layers count from 0, as in
    ``--keep-fp32 layers.0.attention``): the embeddings, then per layer its attention block and
    the whole layer."""
    names = ["embeddings.output"]
    for i in range(num_layers):
        names += [f"layers.{i}.attention.output", f"layers.{i}.output"]
    return tuple(names)


def module_of(internal: str) -> str:
    """The module an internal value comes out of: ``layers.1.attention.output`` -> ``layers.1.attention``."""
    return internal.removesuffix(".output")


def describe_module(module: str) -> tuple[int | None, str]:
    """(layer, block) of a module name: layer 0-based or None outside the layers; block one of
    embeddings, attention, feed_forward (what a layer adds after its attention), pooler."""
    parts = module.split(".")
    if parts[0] != "layers":
        return None, parts[0]
    return int(parts[1]), "attention" if len(parts) > 2 else "feed_forward"
