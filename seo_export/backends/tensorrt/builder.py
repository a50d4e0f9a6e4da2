"""Build a strongly typed TensorRT engine from an ONNX file, with profiles, a timing cache and a manifest.

Precision comes from the ONNX types (TensorRT 11 builds only strongly typed
networks and has no FP16 builder flag), so the FP16 graph from ``seo-export export
--precision fp16`` builds an FP16 engine. Everything that can be checked without
TensorRT (profiles, the ONNX file and its seo nodes, the output folder) is checked
first, and nothing is written unless the build succeeds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seo_export.backends.tensorrt.loader import (
    INSTALL_HINT,
    PluginRegistration,
    current_environment,
    load_tensorrt,
    make_logger,
    register_plugins,
    register_seo_plugins,
)
from seo_export.export.inspect import load_onnx, metadata_value, node_attributes, stored_metadata
from seo_export.export.postprocess import seo_nodes
from seo_export.backends.tensorrt.layers import engine_layers, seo_plugin_layers
from seo_export.backends.tensorrt.manifest import EngineManifest, sha256_bytes, sha256_file, write_manifest
from seo_export.backends.tensorrt.profiles import Profile, input_profile_shapes
from seo_export.backends.tensorrt.plugin_paths import mark_jit_nodes
from seo_export.errors import MissingDependencyError, SeoExportError, UsageError
from seo_export.utils.files import atomic_write_bytes


@dataclass(frozen=True)
class BuildResult:
    engine_path: Path
    manifest_path: Path
    manifest: EngineManifest
    warnings: list[str]  # TensorRT's warnings, kept out of the console unless --verbose
    seo_nodes: int = 0  # the model's seo nodes, each of which should be one seo plugin layer
    jit_notes: tuple[str, ...] = ()  # seo nodes set to the plugins' JIT path, and why


class EngineBuildError(SeoExportError):
    """TensorRT parsed the model but could not build it (tactics, memory, plugins)."""


def network_flags(trt) -> int:
    """Creation flags: strongly typed (explicit on 10.x, the default on 11), and AOT plugins first.

    The seo plugins define both an AOT and a JIT implementation; without a preference
    TensorRT refuses to create them. A node's ``aot`` attribute still overrides this.
    """
    flags = 0
    for name in ("STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS"):
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is not None:
            flags |= 1 << int(flag)
    return flags


def _onnx_input_dims(model) -> dict[str, tuple]:
    """Graph inputs that are not initializers -> dims, None for symbolic ones."""
    weights = {init.name for init in model.graph.initializer}
    dims = {}
    for value in model.graph.input:
        if value.name in weights:
            continue
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in shape)
    return dims


def check_seo_nodes(model) -> None:
    """Each seo node must name the seo plugins and carry attributes they accept.

    TensorRT's ONNX parser finds a plugin by op type, ``plugin_version`` and
    ``plugin_namespace`` (older parsers do not fall back to the node's domain), and hands
    integer attributes over as int32, so a window beyond int32 would wrap before the
    plugin's own checks see it. Checked here, on the ONNX attributes themselves.
    """
    from seo_plugins.trt import rules

    for node in seo_nodes(model):
        where = f"node {node.name!r} (seo::{node.op_type})"
        attrs = node_attributes(node)
        if "plugin_namespace" not in attrs:
            raise UsageError(f"{where} has no plugin_namespace attribute, so TensorRT would not find the seo "
                             f"plugin for it; re-export the model with seo-export export")
        try:
            rules.check_attributes(node.op_type, attrs)
            rules.check_plugin_identity(node.op_type, attrs)
        except rules.PluginRuleError as exc:
            raise UsageError(f"{where}: {exc}") from None


#: Attention types whose layers export as seo nodes (unless exported --decomposed).
SEO_ATTENTION_TYPES = ("local", "sparse")


def check_graph_is_for_tensorrt(model) -> None:
    """Refuse what ONNX Runtime's offline optimizer writes (``optimized_model_filepath``): it inlines
    the seo function bodies, so TensorRT would build them without the plugin kernels, and from its
    EXTENDED level on it adds com.microsoft ops that TensorRT's parser does not know. Refuse INT8
    dynamic-quantized graphs too (``export --precision int8``): they are for ONNX Runtime on a CPU."""
    from seo_export.export.quantize import QUANTIZED_OPS, is_dynamic_int8

    if is_dynamic_int8(model) or metadata_value(model, "precision") == "int8":
        raise UsageError(f"this is an INT8 dynamic-quantized graph for ONNX Runtime on a CPU: TensorRT takes explicit "
                         f"Q/DQ quantization, not {'/'.join(QUANTIZED_OPS)}; for TensorRT export with "
                         "`seo-export export --precision fp16`")
    contrib = sorted({node.op_type for node in model.graph.node if node.domain == "com.microsoft"})
    if contrib:
        raise UsageError(f"the graph holds ONNX Runtime's own ops ({', '.join(contrib[:3])} in com.microsoft), which "
                         "TensorRT cannot parse: it is ONNX Runtime's optimized graph; build from the exported file")
    config = stored_metadata(model, "config") or {}
    if (config.get("attention_type") in SEO_ATTENTION_TYPES and metadata_value(model, "decomposed") == "false"
            and not seo_nodes(model)):
        raise UsageError(f"the model was exported with seo:: nodes ({config['attention_type']} attention) but has "
                         "none left: a tool inlined their function bodies (ONNX Runtime's optimized_model_filepath "
                         "does), and TensorRT would build them without the seo plugins; build from the exported file")


def require_plugins(model, plugins: PluginRegistration) -> None:
    """seo nodes need the registered plugins. Without them TensorRT's parser does not fail: it
    inlines the nodes' ONNX function bodies and the engine builds without the plugin kernels."""
    ops = sorted({node.op_type for node in seo_nodes(model)})
    if ops and plugins.manifest_sha256 is None:
        raise MissingDependencyError(
            f"the model's {', '.join(f'seo::{op}' for op in ops)} nodes need the seo TensorRT plugins, which are "
            f"not registered ({plugins.unavailable_reason}); {INSTALL_HINT}")


def check_build_inputs(onnx_path, engine_path, profiles: list[Profile]):
    """Everything checkable without TensorRT; returns the ONNX graph (weights not loaded)."""
    if not profiles:
        raise UsageError("at least one optimization profile is needed")
    model = load_onnx(onnx_path)
    check_graph_is_for_tensorrt(model)
    check_seo_nodes(model)
    for index, profile in enumerate(profiles):
        try:
            input_profile_shapes(profile, _onnx_input_dims(model))
        except UsageError as exc:
            raise UsageError(f"profile {index} ({profile}): {exc}") from None
    config = stored_metadata(model, "config") or {}
    if config.get("positional_encoding_type") == "learned":
        limit = config.get("positional_encoding_max_len", 0)
        for profile in profiles:
            if profile.seq.max > limit:
                raise UsageError(f"profile {profile} allows seq up to {profile.seq.max}, but the model's learned "
                                 f"positional encoding stops at {limit} tokens")
    if Path(engine_path).resolve() == Path(onnx_path).resolve():
        raise UsageError("the engine path is the ONNX path; choose another output")
    return model


def describe_parser_errors(errors: list, nodes=()) -> str:
    """One line for TensorRT's ONNX parser errors: the first failing node's name and op, and the count."""
    first = errors[0]
    index = first.node() if callable(getattr(first, "node", None)) else -1
    node = nodes[index] if 0 <= index < len(nodes) else None
    # node_name()/node_operator() exist from TensorRT 10.x on; older bindings give only the index.
    name = first.node_name() if hasattr(first, "node_name") else (node.name if node is not None else "")
    op = first.node_operator() if hasattr(first, "node_operator") else (node.op_type if node is not None else "")
    code = first.code()
    where = f"node {name!r} (op {op})" if name or op else "the model"
    text = f"TensorRT cannot parse {where}: {getattr(code, 'name', code)}: {str(first.desc()).splitlines()[0]}"
    if len(errors) > 1:
        text += f" (+{len(errors) - 1} more)"
    return text


def _parse(trt, builder, logger, onnx_path, model, edited: bool = False):
    """Parse ``onnx_path``, or with ``edited`` the in-memory ``model`` (external weights still
    resolved next to ``onnx_path``)."""
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    parsed = (parser.parse(model.SerializeToString(), str(onnx_path)) if edited
              else parser.parse_from_file(str(onnx_path)))
    if not parsed:
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        if not errors:
            raise UsageError(f"TensorRT cannot parse {onnx_path}: {_first(logger.errors, 'no details given')}")
        raise UsageError(describe_parser_errors(errors, list(model.graph.node)))
    # The parser must outlive the network it filled (it owns the weights).
    return network, parser


def _first(messages: list[str], default: str) -> str:
    return messages[0].splitlines()[0] if messages else default


def _add_profiles(builder, config, network, profiles: list[Profile]) -> None:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dims = {tensor.name: tuple(tensor.shape) for tensor in inputs}
    for profile in profiles:
        trt_profile = builder.create_optimization_profile()
        for name, (minimum, optimum, maximum) in input_profile_shapes(profile, dims).items():
            trt_profile.set_shape(name, minimum, optimum, maximum)
        config.add_optimization_profile(trt_profile)


def configure(trt, config, workspace: int | None) -> None:
    if workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    # DETAILED: the engine inspector then gives each layer's type, which tells seo plugin layers
    # from inlined function bodies (the default, LAYER_NAMES_ONLY, lists bare names).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def count_seo_plugin_layers(trt, logger, plan: bytes, model) -> int | None:
    """How many seo plugin layers the built engine holds; None where the inspector cannot tell."""
    names = [node.name for node in seo_nodes(model)]
    if not names:
        return 0  # nothing to inspect: a plain model has no plugin layers to look for
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        return None
    try:
        return len(seo_plugin_layers(engine_layers(trt, engine), names))
    except ValueError as exc:
        logger.warnings.append(f"cannot count the engine's seo plugin layers: {exc}")
        return None


def _load_timing_cache(config, path: Path | None):
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    # False: a cache from another GPU or TensorRT version is not silently mixed in.
    if not config.set_timing_cache(cache, False):
        config.set_timing_cache(config.create_timing_cache(b""), False)


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    profiles: list[Profile],
    timing_cache_path: str | os.PathLike | None = None,
    workspace: int | None = None,
    plugin_registrar: Callable[[], PluginRegistration] | None = register_seo_plugins,
    verbose: bool = False,
) -> BuildResult:
    """Build and write ``engine_path`` and its manifest ``engine_path.json``."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = check_build_inputs(onnx_path, engine_path, profiles)
    trt = load_tensorrt("building an engine")
    logger = make_logger(trt, verbose)
    plugins = register_plugins(plugin_registrar)
    require_plugins(model, plugins)
    trt.init_libnvinfer_plugins(logger, "")

    jit_notes = mark_jit_nodes(model)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path, model, edited=bool(jit_notes))
    config = builder.create_builder_config()
    configure(trt, config, workspace)
    _add_profiles(builder, config, network, profiles)
    cache_path = Path(timing_cache_path) if timing_cache_path else None
    _load_timing_cache(config, cache_path)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build {onnx_path.name}: "
                               f"{_first(logger.errors, 'no error logged; rerun with --verbose')}")
    engine = bytes(plan)
    manifest = EngineManifest(
        environment=current_environment(trt, plugins),
        onnx_sha256=sha256_file(onnx_path),
        engine_sha256=sha256_bytes(engine),
        profiles=list(profiles),
        onnx_file=onnx_path.name,
        model_config=stored_metadata(model, "config"),
        seo_plugin_layers=count_seo_plugin_layers(trt, logger, engine, model),
    )
    engine_path.parent.mkdir(parents=True, exist_ok=True)  # folders only now: a failed build leaves nothing
    atomic_write_bytes(engine_path, engine)
    try:
        written = write_manifest(manifest, engine_path)
    except BaseException:
        engine_path.unlink(missing_ok=True)  # an engine without its manifest would be refused by run
        raise
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return BuildResult(engine_path, written, manifest, list(logger.warnings), len(seo_nodes(model)), tuple(jit_notes))
