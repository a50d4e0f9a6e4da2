"""Ahead-of-time compilation of the seo kernels to PTX for named CUDA targets, no GPU needed.

``compile_kernels`` writes one ``<name>.ptx`` per (configuration, arch) and a
``manifest.json`` holding everything a launcher without Python needs: the PTX entry
name, file hash, run-time arguments in PTX parameter order, threads per block, shared
memory and the grid as expressions over the shapes B, H, S (see ``seo_plugins.launch``),
and the static resource checks' figures (``seo_plugins.ptxas``: registers, spills, shared memory).
Attributes (windows, landmarks, scale, ...) are compile-time constants, one kernel each.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from seo_plugins import ptxas
from seo_plugins.errors import MissingDependencyError, UsageError
from seo_plugins.files import atomic_write_text
from seo_plugins.launch import AOT_MAX_BLOCK_L, SHAPE_SYMBOLS, grid_expressions

OPS = ("local_window", "landmark")
ELEMENT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
DTYPES = tuple(ELEMENT_BYTES)
DEFAULT_ARCHS = ("sm_80", "sm_90")
# PTX ISA 8.0 (CUDA 12.0 drivers and later) instead of Triton's newest (8.8 / 9.4), so a
# driver JIT-compiles the PTX on older installs; it covers sm_80 and sm_90a.
DEFAULT_PTX_VERSION = 80
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# Triton 3.9 appends these pointer parameters to every kernel; a zero size means unused.
SCRATCH_PARAMS = ("global_scratch", "profile_scratch")
# Pointer arguments are compiled assuming 16-byte alignment (vector loads); TensorRT and
# the CUDA allocators give far more.
POINTER_ALIGNMENT = 16


@dataclass(frozen=True)
class KernelConfig:
    """One compiled kernel: the op, its input dtype, head dim and attribute values."""

    op: str
    dtype: str = "fp16"
    head_dim: int = 64
    window_left: int = 0  # local_window only
    window_right: int = 0
    num_landmarks: int = 0  # landmark only
    pinv_iterations: int = 6
    has_mask: bool = True
    has_bias: bool = False
    max_distance: int = 0  # K of the [H, 2K+1] bias table; 0 without bias
    scale: float | None = None  # None: 1 / sqrt(head_dim)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise UsageError(f"op must be one of {', '.join(OPS)}, got {self.op!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.head_dim <= 0 or self.window_left < 0 or self.window_right < 0 or self.max_distance < 0:
            raise UsageError(f"head_dim must be > 0 and windows, max_distance >= 0: {self}")
        if self.op == "landmark" and (self.num_landmarks <= 0 or self.pinv_iterations < 0):
            raise UsageError(f"landmark needs num_landmarks > 0 and pinv_iterations >= 0: {self}")
        if not self.has_bias and self.max_distance:
            raise UsageError(f"max_distance is the bias table's K; set has_bias or leave it 0: {self}")

    @property
    def effective_scale(self) -> float:
        return self.head_dim ** -0.5 if self.scale is None else float(self.scale)

    @property
    def name(self) -> str:
        """A C identifier naming every attribute, e.g. ``local_window_fp16_d64_w64_64_mask_bias32``."""
        shape = (f"w{self.window_left}_{self.window_right}" if self.op == "local_window"
                 else f"l{self.num_landmarks}_i{self.pinv_iterations}")
        parts = [self.op, self.dtype, f"d{self.head_dim}", shape]
        parts += ["mask"] * self.has_mask + [f"bias{self.max_distance}"] * self.has_bias
        if self.scale is not None and _fp32_bits(self.scale) != _fp32_bits(self.head_dim ** -0.5):
            parts.append(f"s{_fp32_bits(self.scale):08x}")  # the FP32 bits the kernel multiplies by
        return "_".join(parts)

    def kernel_and_constants(self):
        """(JIT kernel, launch tiles, constexpr values) through the same helpers the JIT launchers use."""
        common = dict(max_distance=self.max_distance, scale=self.effective_scale, has_mask=self.has_mask,
                      has_bias=self.has_bias)
        if self.op == "local_window":
            from seo_plugins.kernels.local_window import local_window_constants, local_window_fwd

            launch, constants = local_window_constants(
                self.head_dim, ELEMENT_BYTES[self.dtype], self.window_left, self.window_right, **common
            )
            return local_window_fwd, launch, constants
        from seo_plugins.kernels.landmark import landmark_constants, landmark_fwd

        try:  # the single-kernel AOT form refuses what cannot fit TensorRT's shared memory
            launch, constants = landmark_constants(self.head_dim, ELEMENT_BYTES[self.dtype], self.num_landmarks,
                                                   self.pinv_iterations, **common)
        except ValueError as exc:
            raise UsageError(f"{self.name}: {exc}") from None
        return landmark_fwd, launch, constants


def _fp32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def default_configs() -> list[KernelConfig]:
    """The model zoo defaults as the exporter emits them, in FP16 and FP32: head dim 64, window
    128 bidirectional or causal, landmarks with 6 iterations. The zoo's 64 landmarks run on the
    JIT path only (``seo_plugins.launch.AOT_MAX_BLOCK_L``): the AOT build takes 32, its most.
    Every exported node carries
    a mask and a bias input (an absent bias becomes a zero [H, 1] table, K = 0; relative
    positional encoding uses K = 32), so both are always present."""
    configs = []
    for dtype in ("fp16", "fp32"):
        for max_distance in (0, 32):
            flags = dict(dtype=dtype, head_dim=64, has_mask=True, has_bias=True, max_distance=max_distance)
            configs += [KernelConfig("local_window", window_left=64, window_right=64, **flags),
                        KernelConfig("local_window", window_left=127, window_right=0, **flags),
                        KernelConfig("landmark", num_landmarks=AOT_MAX_BLOCK_L, pinv_iterations=6, **flags)]
    return configs


def parse_arch(arch: str) -> int:
    """``sm_80`` / ``sm_90a`` / ``80`` -> 80 / 90 / 80."""
    match = re.fullmatch(r"(?:sm_?)?(\d+)a?", arch.strip())
    if not match or int(match.group(1)) < 80:
        raise UsageError(f"arch must look like sm_80 or sm_90 (compute capability >= 8.0), got {arch!r}")
    return int(match.group(1))


@dataclass(frozen=True)
class CompiledKernel:
    """One kernel compiled for one arch: its PTX and its manifest entry."""

    ptx: str
    entry: dict


def _runtime_args(config: KernelConfig) -> list[dict]:
    """The kernel's run-time parameters in PTX order (TensorRT AOT order: inputs, scalars, outputs).
    Absent mask or bias are compile-time None, so they have no parameter."""
    tensor = f"*{config.dtype}"
    args = [{"name": n, "role": "input", "type": tensor} for n in ("q", "k", "v")]
    if config.has_mask:
        args.append({"name": "key_padding_mask", "role": "input", "type": "*i8"})
    if config.has_bias:
        args.append({"name": "rel_bias", "role": "input", "type": tensor})
    args += [{"name": "num_heads", "role": "scalar", "type": "i32", "expr": "H"},
             {"name": "seq_len", "role": "scalar", "type": "i32", "expr": "S"},
             {"name": "out", "role": "output", "type": tensor}]
    return args


# Kernel parameter for each manifest argument name.
_KERNEL_PARAM = {"q": "Q", "k": "K", "v": "V", "key_padding_mask": "Mask", "rel_bias": "Bias",
                 "num_heads": "num_heads", "seq_len": "seq_len", "out": "Out"}


def _ast_source(kernel, args: list[dict], constants: dict):
    """Triton's AOT description: run-time parameter types, constexpr values, alignment hints."""
    from triton.compiler import ASTSource

    signature = {name: "constexpr" for name in kernel.arg_names}
    signature.update({_KERNEL_PARAM[a["name"]]: a["type"] for a in args})
    constexprs = {**constants, **{p: None for p in ("Mask", "Bias") if signature[p] == "constexpr"}}
    attrs = {(kernel.arg_names.index(_KERNEL_PARAM[a["name"]]),): [["tt.divisibility", POINTER_ALIGNMENT]]
             for a in args if a["type"].startswith("*")}
    return ASTSource(kernel, signature, constexprs, attrs), constexprs


def ptx_entry_params(ptx: str, kernel: str) -> list[str]:
    """Parameter names of ``.entry kernel(...)`` in order."""
    match = re.search(rf"\.entry\s+{re.escape(kernel)}\s*\(([^)]*)\)", ptx)
    if not match:
        raise ValueError(f"no .entry {kernel} in the PTX")
    return re.findall(r"\.param\s+[^,]*?\s(\w+)\s*(?:,|$)", match.group(1))


def _with_scratch_params(args: list[dict], ptx: str, metadata) -> list[dict]:
    """``args`` plus the scratch pointers Triton appended, each tagged with its PTX parameter name."""
    params = ptx_entry_params(ptx, metadata.name)
    extra = len(params) - len(args)
    if not 0 <= extra <= len(SCRATCH_PARAMS):
        raise RuntimeError(f"{metadata.name}: PTX has {len(params)} parameters, expected {len(args)} + scratch")
    sizes = {"global_scratch": metadata.global_scratch_size, "profile_scratch": metadata.profile_scratch_size}
    args = args + [{"name": s, "role": "scratch", "type": "*i8", "bytes": sizes[s]} for s in SCRATCH_PARAMS[:extra]]
    return [{**arg, "ptx_param": param} for arg, param in zip(args, params)]


def compile_kernel(config: KernelConfig, arch: str, ptx_version: int | None = DEFAULT_PTX_VERSION) -> CompiledKernel:
    """Compile ``config`` for ``arch`` with Triton's AOT path (ASTSource + GPUTarget)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.runtime.jit import JITFunction

    from seo_plugins.kernels import compile_options

    kernel, launch, constants = config.kernel_and_constants()
    if not isinstance(kernel, JITFunction):
        raise MissingDependencyError(
            "AOT compilation needs the compiled (not interpreted) kernels: unset TRITON_INTERPRET and rerun"
        )
    capability = parse_arch(arch)
    source, constexprs = _ast_source(kernel, _runtime_args(config), constants)
    options = compile_options(launch)
    if ptx_version is not None:
        options["ptx_version"] = ptx_version
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
    md, ptx = compiled.metadata, compiled.asm["ptx"]
    name = f"{config.name}_sm{capability}"
    entry = {
        "name": name,
        "kernel": md.name,  # the PTX .entry
        "ptx": f"{name}.ptx",
        "sha256": hashlib.sha256(ptx.encode()).hexdigest(),
        "arch": f"sm_{capability}",
        "target": re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1),
        "ptx_isa": re.search(r"^\.version\s+(\S+)", ptx, re.M).group(1),
        "config": asdict(config),
        "constexprs": constexprs,
        "args": _with_scratch_params(_runtime_args(config), ptx, md),
        "pointer_alignment": POINTER_ALIGNMENT,
        "num_warps": md.num_warps,
        "num_stages": md.num_stages,
        "block": [md.num_warps * 32, 1, 1],
        # Dynamic shared memory; above 48 KiB the launcher must raise the kernel's limit first.
        "shared_mem_bytes": md.shared,
        "grid": {
            "expr": grid_expressions(launch),
            "python": f"seo_plugins.launch.{type(launch).__name__}(**launch).grid(B, H, S)",
            "launch": asdict(launch),
        },
    }
    return CompiledKernel(ptx=ptx, entry=entry)


def compile_checked(config: KernelConfig, arch: str, ptx_version: int | None, ptxas_path: str | None) -> CompiledKernel:
    """``compile_kernel`` plus the entry's ``resources``: ptxas's figures when ``ptxas_path`` is given."""
    compiled = compile_kernel(config, arch, ptx_version)
    entry = compiled.entry
    found = ptxas.measure(compiled.ptx, entry["target"], entry["kernel"], ptxas_path) if ptxas_path else None
    return CompiledKernel(ptx=compiled.ptx, entry={**entry, "resources": ptxas.resources_entry(entry, found)})


def _describe(entry: dict) -> str:
    record = entry["resources"]
    if "registers" not in record:
        return f"{record['dynamic_shared_bytes']} B shared"
    return (f"{record['dynamic_shared_bytes']} B shared + {record['static_shared_bytes']} B static, "
            f"{record['registers']} registers, spills {record['spill_stores_bytes']} B stored "
            f"{record['spill_loads_bytes']} B loaded")


def compile_kernels(configs=None, archs=DEFAULT_ARCHS, *, out_dir, ptx_version: int | None = DEFAULT_PTX_VERSION,
                    jobs: int | None = None, log=None, run_ptxas: bool = True,
                    allow_shared_opt_in: bool = False) -> Path:
    """Compile every configuration for every arch into ``out_dir``; returns the manifest path.

    ``jobs`` compiler processes run at once (default: one per CPU). Each file is written
    atomically and the manifest last, so an interrupted run never leaves a manifest naming a
    missing file (``load_manifest`` also checks every hash). ``run_ptxas`` assembles each PTX
    for its target to record registers, spills and static shared memory; no manifest is written
    when a kernel fails ``ptxas.check_kernels`` (above 48 KiB of shared memory only with
    ``allow_shared_opt_in``).
    """
    import triton

    for arch in archs:
        parse_arch(arch)  # fail on a typo before minutes of compiling
    ptxas_path = ptxas.find_ptxas() if run_ptxas else None  # and on a missing ptxas
    configs = default_configs() if configs is None else list(configs)
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise UsageError(f"duplicate kernel configurations: {sorted({n for n in names if names.count(n) > 1})}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = [(config, arch) for config in configs for arch in archs]
    jobs = min(jobs or os.cpu_count() or 1, len(work))
    entries = []
    with contextlib.ExitStack() as stack:
        run = map
        if jobs > 1:  # spawn: compiler workers must not inherit a forked Triton/torch state
            pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")))
            run = pool.map
        for compiled in run(compile_checked, *zip(*work), itertools.repeat(ptx_version), itertools.repeat(ptxas_path)):
            atomic_write_text(out / compiled.entry["ptx"], compiled.ptx)
            entries.append(compiled.entry)
            if log:
                log(f"compiled {compiled.entry['name']} ({_describe(compiled.entry)})")
    ptxas.check_kernels(entries, allow_shared_opt_in)
    manifest = {
        "format": MANIFEST_FORMAT,
        "triton_version": triton.__version__,
        "ptxas": ({"path": ptxas_path, "version": ptxas.ptxas_version(ptxas_path)} if ptxas_path
                  else {"skipped": "not run (--no-ptxas): no register, spill or static shared memory figures"}),
        "shape_symbols": SHAPE_SYMBOLS,
        "kernels": entries,
    }
    path = out / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def load_manifest(out_dir) -> dict:
    """Read a manifest and check every PTX file against its recorded sha256."""
    out = Path(out_dir)
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        digests = {e["ptx"]: hashlib.sha256((out / e["ptx"]).read_bytes()).hexdigest() for e in manifest["kernels"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{out} holds no readable kernel manifest ({exc}); run: seo-export plugins compile") from None
    for entry in manifest["kernels"]:
        if digests[entry["ptx"]] != entry["sha256"]:
            raise UsageError(f"{out / entry['ptx']} does not match its manifest hash; recompile the kernels")
    return manifest


def drop_unused_scratch_params(ptx: str, entry: dict) -> str:
    """The PTX without the trailing scratch parameters the kernel never uses (size 0).

    Launchers that pass only the kernel's own arguments (TensorRT's AOT plugins) need an
    entry whose parameter list ends with them.
    """
    unused = [a for a in entry["args"] if a["role"] == "scratch" and a["bytes"] == 0]
    for arg in reversed(unused):
        if re.search(rf"\[{arg['ptx_param']}\]", ptx):
            raise ValueError(f"{entry['kernel']}: scratch parameter {arg['ptx_param']} is used")
        ptx, n = re.subn(rf",\s*\.param\s+[^,()]*?\s{arg['ptx_param']}(\s*\))", r"\1", ptx, count=1)
        if n != 1:
            raise ValueError(f"{entry['kernel']}: scratch parameter {arg['ptx_param']} is not the last one")
    return ptx


__all__ = [
    "DEFAULT_ARCHS",
    "KernelConfig",
    "compile_checked",
    "compile_kernel",
    "compile_kernels",
    "default_configs",
    "drop_unused_scratch_params",
    "load_manifest",
]
