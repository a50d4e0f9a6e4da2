"""``seo-export plugins compile``: the seo kernels compiled ahead of time to PTX, with their manifest.

Triton compiles for a named CUDA target, so no GPU is needed. Without ``--model`` every
default configuration is compiled (``seo_plugins.aot.default_configs``); with it, the
configurations the model's seo nodes need: one kernel per (op, dtype, head dim, attributes,
bias width). Every PTX is assembled with ``ptxas`` for its arch and checked (``seo_plugins.ptxas``):
no spills, at most 48 KiB of shared memory. The output folder appears complete or not at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from seo_export.cli.common import positive_int

DEFAULT_ARCHS = "sm_80,sm_90"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(plugins_parser=parser)
    actions = parser.add_subparsers(dest="plugins_command", metavar="ACTION")
    help_text = ("AOT-compile the seo kernels to PTX for named GPU archs (no GPU needed) and write "
                 "DIR/manifest.json: kernel names, PTX files and hashes, launch grids, shared memory, and the "
                 "registers and spills ptxas reports. Fails when a kernel spills or needs more than 48 KiB of "
                 "shared memory.")
    compile_parser = actions.add_parser("compile", help=help_text, description=help_text)
    compile_parser.add_argument("-o", "--output", required=True, metavar="DIR",
                                help="output folder (replaced as a whole; a folder holding anything but a "
                                     "kernel manifest is refused)")
    compile_parser.add_argument("--arch", default=DEFAULT_ARCHS, metavar="LIST",
                                help=f"comma-separated CUDA archs (default {DEFAULT_ARCHS})")
    compile_parser.add_argument("--model", metavar="MODEL.onnx",
                                help="compile only what this exported model's seo nodes need "
                                     "(default: the model zoo's default configurations)")
    compile_parser.add_argument("--head-dim", type=positive_int, metavar="D",
                                help="head dim for --model when neither its graph nor its seo_export.config "
                                     "metadata gives one")
    compile_parser.add_argument("--jobs", type=positive_int, metavar="N",
                                help="compiler processes (default: one per CPU)")
    compile_parser.add_argument("--ptx-version", type=int, default=80, metavar="ISA",
                                help="PTX ISA version written into the PTX, e.g. 80 for 8.0 (default 80: loads "
                                     "on CUDA 12.0+ drivers)")
    compile_parser.add_argument("--no-ptxas", action="store_true",
                                help="skip ptxas (CUDA's assembler): no register, spill or static shared memory "
                                     "checks (the manifest records that they were skipped)")
    compile_parser.add_argument("--allow-shared-opt-in", action="store_true",
                                help="keep kernels that need more than 48 KiB of dynamic shared memory, for launchers "
                                     "that raise the limit (TensorRT's AOT plugins still refuse them)")
    compile_parser.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "plugins_command", None) != "compile":
        args.plugins_parser.print_help(sys.stderr)
        return 2
    return compile_command(args)


# ----------------------------------------------------------------------------- configurations of a model


def _value_types(model) -> dict:
    """Tensor name -> (elem_type, dims with None for symbolic ones), from the graph's declarations."""
    known = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        if tensor.elem_type:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
            known[value.name] = (tensor.elem_type, dims if tensor.HasField("shape") else None)
    for init in model.graph.initializer:
        known.setdefault(init.name, (init.data_type, list(init.dims)))
    return known


def _inferred_value_types(model) -> dict:
    known = _value_types(model)
    try:  # fills in what the exporter did not declare; never required
        import onnx

        known = {**_value_types(onnx.shape_inference.infer_shapes(model)), **known}
    except Exception:
        pass
    return known


def _static(dims, index):
    if dims is None or len(dims) <= index:
        return None
    return dims[index]


def model_kernel_configs(path, head_dim_override=None) -> list:
    """The kernel configurations the seo nodes of the ONNX model at ``path`` need, without duplicates."""
    import onnx

    from seo_export.errors import UsageError
    from seo_export.export.inspect import load_onnx, node_attributes, stored_metadata
    from seo_plugins.trt import rules

    model = load_onnx(path)
    nodes = [n for n in model.graph.node
             if n.op_type in rules.OPS and (n.domain == rules.NAMESPACE
                                            or node_attributes(n).get("plugin_namespace") == rules.NAMESPACE)]
    if not nodes:
        raise UsageError(f"{path} has no seo plugin nodes ({', '.join(rules.OPS)}): nothing to compile "
                         "(a --decomposed export needs no plugins)")
    config = stored_metadata(model, "config") or {}
    metadata = {p.key: p.value for p in model.metadata_props}
    precision = metadata.get("seo_export.precision")
    keeps_fp32 = metadata.get("seo_export.keep_fp32", "[]") not in ("", "[]")
    known = _inferred_value_types(model)

    config_head_dim = None
    if config.get("hidden_size") and config.get("num_heads"):
        config_head_dim = int(config["hidden_size"]) // int(config["num_heads"])
    config_bias_width = None
    if config:
        relative = config.get("positional_encoding_type") == "relative"
        config_bias_width = 2 * (int(config.get("positional_encoding_max_relative_position", 0)) if relative else 0) + 1

    dtype_names = {onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.FLOAT: "fp32",
                   onnx.TensorProto.BFLOAT16: "bf16", onnx.TensorProto.DOUBLE: "fp64"}
    configs = {}
    for index, node in enumerate(nodes):
        where = f"node {node.name or index!r} ({node.op_type})"
        attrs = node_attributes(node)
        try:
            rules.check_plugin_identity(node.op_type, attrs)
            if len(node.input) != len(rules.INPUT_NAMES) or any(not name for name in node.input):
                raise rules.PluginRuleError(f"{node.op_type} needs all {len(rules.INPUT_NAMES)} inputs "
                                            f"({', '.join(rules.INPUT_NAMES)}), got {list(node.input)}")
            q_type, q_dims = known.get(node.input[0], (None, None))
            _, bias_dims = known.get(node.input[4], (None, None))
            if q_type is not None:
                dtypes = [dtype_names.get(q_type, f"ONNX type {q_type}")]
            elif precision in ("fp16", "fp32"):
                dtypes = sorted({precision, "fp32"} if keeps_fp32 else {precision})
            else:
                dtypes = ["fp16", "fp32"]
            head_dim = head_dim_override or _static(q_dims, 3) or config_head_dim
            if head_dim is None:
                raise rules.PluginRuleError("the head dim is unknown: the graph does not declare q's shape and the "
                                            "model has no seo_export.config metadata; pass --head-dim")
            graph_head_dim = _static(q_dims, 3)
            if head_dim_override and graph_head_dim and graph_head_dim != head_dim_override:
                raise rules.PluginRuleError(f"--head-dim {head_dim_override} contradicts q's head dim "
                                            f"{graph_head_dim} in the graph")
            bias_width = _static(bias_dims, 1) or config_bias_width
            if bias_width is None:
                raise rules.PluginRuleError("the rel_bias width (2K+1) is unknown: the graph does not declare its "
                                            "shape and the model has no seo_export.config metadata")
            for dtype in dtypes:
                kernel = rules.kernel_config(node.op_type, dtype, head_dim, bias_width, attrs)
                configs.setdefault(kernel.name, kernel)
        except rules.PluginRuleError as exc:
            raise UsageError(f"{path}: {where}: {exc}") from None
    return list(configs.values())


# ----------------------------------------------------------------------------- output folder


def _check_output(out: Path, manifest_name: str) -> None:
    from seo_export.errors import UsageError

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / manifest_name).is_file():
        raise UsageError(f"{out} is not empty and holds no kernel manifest; choose another -o (it would be replaced)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    for parent in path.absolute().parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``, swapping out an earlier one."""
    import shutil

    mask = _umask()
    os.chmod(staging, 0o777 & ~mask)
    for path in staging.iterdir():  # written through private temporary files (0600)
        os.chmod(path, 0o666 & ~mask)
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def compile_command(args: argparse.Namespace) -> int:
    import importlib.util
    import shutil
    import tempfile
    import time

    from seo_export.errors import MissingDependencyError, SeoExportError, UsageError

    if importlib.util.find_spec("triton") is None:
        raise MissingDependencyError("plugins compile needs Triton; install it with: pip install 'seo-export[kernels]'")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise UsageError("TRITON_INTERPRET is set: the interpreter cannot compile kernels; unset it and rerun")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the kernels pin it anyway; silences Triton's warning

    from seo_plugins.aot import MANIFEST_NAME, compile_kernels, default_configs, load_manifest, parse_arch

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if not archs:
        raise UsageError("--arch needs at least one arch, e.g. sm_80,sm_90")
    archs = list(dict.fromkeys(f"sm_{parse_arch(a)}" for a in archs))
    configs = model_kernel_configs(args.model, args.head_dim) if args.model else default_configs()

    out = Path(args.output)
    _check_output(out, MANIFEST_NAME)
    created = _missing_parents(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    log = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    start = time.perf_counter()
    done = False
    try:
        try:
            manifest_path = compile_kernels(configs, archs, out_dir=staging, ptx_version=args.ptx_version,
                                            jobs=args.jobs, log=log, run_ptxas=not args.no_ptxas,
                                            allow_shared_opt_in=args.allow_shared_opt_in)
        except SeoExportError:
            raise
        except Exception as exc:  # Triton's compiler errors: one line, not a traceback
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"compiling the kernels failed: {type(exc).__name__}: {first}") from None
        manifest = load_manifest(staging)  # every hash checked before the folder goes live
        _replace_folder(staging, out)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            for parent in created:  # innermost first: leave no folder a failed run made
                try:
                    parent.rmdir()
                except OSError:
                    break
    elapsed = time.perf_counter() - start
    print(f"compiled {len(manifest['kernels'])} kernels ({len(configs)} configurations x {len(archs)} archs: "
          f"{', '.join(archs)}) into {out} in {elapsed:.1f} s; manifest {out / Path(manifest_path).name}; "
          f"{_static_checks_summary(manifest)}")
    return 0


def _static_checks_summary(manifest: dict) -> str:
    kernels = manifest["kernels"]
    records = [e["resources"] for e in kernels]
    text = f"largest dynamic shared memory {max(r['dynamic_shared_bytes'] for r in records)} bytes"
    if "version" in manifest["ptxas"]:
        text += (f"; ptxas {manifest['ptxas']['version']}: no spills, at most "
                 f"{max(r['registers'] for r in records)} registers per thread")
    else:
        text += "; ptxas skipped (--no-ptxas): registers and spills not checked"
    opt_in = [e["name"] for e in kernels if e["resources"]["needs_shared_opt_in"]]
    if opt_in:
        text += f"; needing the shared-memory opt-in above 48 KiB (not for TensorRT AOT): {', '.join(opt_in)}"
    return text
