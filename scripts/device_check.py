"""The prepared GPU check: Triton kernels, the AOT PTX TensorRT would launch, and timings.

Run through ``scripts/device_check.sh OUTDIR`` (the repository on PYTHONPATH, nothing
installed). Stages, each recording its own failure so the others still report:

1. ``triton``: the Triton kernels on the GPU against the reference ops in FP16 and BF16 over
   the edge cases (S < window, S = 1, odd lengths, fully padded rows, causal, mask + bias).
2. ``aot``: kernels compiled by ``seo_plugins.aot`` for this GPU's arch, loaded from PTX with
   CuPy and launched with the manifest's grid, block and shared memory: with Triton's two
   scratch pointers (zeros), and stripped of them exactly as TensorRT's AOT launcher calls it.
3. ``timing``: the local kernel against eager masked dense attention, SDPA with a band mask and
   FlexAttention's sliding window at S = 4k, 16k, 32k (B=1, H=16, D=64, band 256, FP16),
   interleaved rounds timed with CUDA events, TFLOP/s on the band's FLOPs.

Results go to OUTDIR/device_check.json (rewritten atomically after every stage). Exit status:
0 all correctness checks passed, 1 a correctness check failed or its stage broke, 2 no GPU.
``--dry-run`` exercises the harness on CPU (Triton's interpreter, tiny sizes, PTX compiled
but not launched) so the script is tested where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

RESULT_NAME = "device_check.json"
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "fp16": 2.0**-11, "bf16": 2.0**-8}
LOCAL_FP32_TOL, LANDMARK_FP32_TOL = 1e-5, 1e-4

# Stage 1 cases. local: (seq, head_dim, window_left, window_right, mask, bias K, scale)
LOCAL_CASES = {
    "odd-length-mask-bias": (37, 64, 3, 3, "random", 2, None),
    "causal-long-bias": (1000, 64, 127, 0, "random", 32, None),
    "single-token": (1, 64, 4, 0, "prefix", 3, None),
    "seq-shorter-than-window": (20, 64, 64, 64, "prefix", 8, 0.3),
    "zero-bias-table": (45, 64, 0, 0, "random", 0, None),
    "wide-band-no-mask": (513, 64, 64, 64, None, 32, None),
    "head-dim-80": (77, 80, 16, 16, "random", 4, None),
}
# landmark: (seq, head_dim, num_landmarks, pinv_iterations, mask, bias K)
LANDMARK_CASES = {
    "odd-length-padded-sample": (37, 64, 8, 6, "random", 3),
    "seq-shorter-than-landmarks": (5, 64, 8, 6, None, 2),
    "single-token-zero-bias": (1, 64, 4, 6, "prefix", 0),
    "empty-segments-long": (1000, 64, 64, 6, "hole", 32),
}
DRY_LOCAL_CASES = {"odd-length-mask-bias": (13, 8, 2, 1, "random", 2, None), "causal": (9, 8, 3, 0, "prefix", 0, None)}
DRY_LANDMARK_CASES = {"odd-length-padded-sample": (11, 8, 4, 2, "random", 1)}

# Stage 3: B, H, D, band (window_left + window_right + 1 = 256), dtype.
TIMING = dict(batch=1, heads=16, head_dim=64, window_left=128, window_right=127, seqs=(4096, 16384, 32768))
CONTENDERS = ("local_triton", "dense_eager", "sdpa_band_mask", "flex_sliding_window")


# ----------------------------------------------------------------------------- small helpers


def now() -> float:
    return time.perf_counter()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip()


def atomic_write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def band_flops(batch: int, heads: int, seq: int, band: int, head_dim: int) -> int:
    """FLOPs of banded attention: QK^T and PV over ``band`` keys per query, 2 FLOPs per multiply-add each."""
    return 4 * batch * heads * seq * band * head_dim


def dense_eager_bytes(batch: int, heads: int, seq: int, elem_bytes: int = 2) -> int:
    """Peak extra memory of eager masked attention: the [B, H, S, S] logits and probabilities, and the mask."""
    return 2 * batch * heads * seq * seq * elem_bytes + 2 * seq * seq


def sdpa_mask_bytes(seq: int) -> int:
    """The [S, S] bool band mask, and the additive float mask SDPA may make from it."""
    return seq * seq * (1 + 4)


def tolerances(dtype_name: str, fp32_tol: float, rounded_operand_max: float = 0.0) -> dict:
    """As tests/plugins/test_kernels.py: FP32 reorderings; 16-bit output rounding (2u) plus, for the
    local kernel, P rounded to the value dtype (u * max|v|)."""
    if dtype_name == "fp32":
        return dict(atol=fp32_tol, rtol=fp32_tol)
    u = UNIT_ROUNDOFF[dtype_name]
    return dict(atol=fp32_tol + u * rounded_operand_max, rtol=2 * u)


class Deadline:
    def __init__(self, seconds: float):
        self.start, self.seconds = now(), seconds

    def left(self) -> float:
        return self.seconds - (now() - self.start)


# ----------------------------------------------------------------------------- stage 1: Triton vs reference


def make_mask(torch, kind, batch, seq, device):
    """None or [batch, seq] bool; sample 1 fully padded."""
    if kind is None:
        return None
    gen = torch.Generator().manual_seed(seq)
    if kind == "random":
        mask = torch.rand(batch, seq, generator=gen) > 0.3
    elif kind == "prefix":
        lengths = torch.tensor([seq, 0, max(seq // 2, 1)])[:batch]
        mask = torch.arange(seq)[None, :] < lengths[:, None]
    else:  # "hole": a run of padding in the middle, so some landmark segments are empty
        mask = torch.ones(batch, seq, dtype=torch.bool)
        mask[:, seq // 4: seq // 2] = False
    if batch > 1:
        mask[1] = False
    return mask.to(device)


def compare(torch, out, expected, tol: dict, mask=None) -> dict:
    """Max errors and whether ``out`` is within ``atol + rtol * |expected|`` everywhere."""
    out32, exp32 = out.float(), expected.float()
    err = (out32 - exp32).abs()
    allowed = tol["atol"] + tol["rtol"] * exp32.abs()
    finite = bool(torch.isfinite(out32).all())
    record = {
        "max_abs_err": float(err.max()) if err.numel() else 0.0,
        "max_rel_err": float((err / exp32.abs().clamp_min(1e-3)).max()) if err.numel() else 0.0,
        "worst_err_over_allowed": float((err / allowed).max()) if err.numel() else 0.0,
        "finite": finite,
        "tolerance": tol,
    }
    ok = finite and bool((err <= allowed).all())
    if mask is not None and mask.shape[0] > 1 and not bool(mask[1].any()):
        padded_zero = bool((out[1] == 0).all())
        record["fully_padded_sample_is_zero"] = padded_zero
        ok = ok and padded_zero
    record["passed"] = ok
    return record


def run_local_case(torch, ops, device, dtype_name, dtype, case, heads=2, batch=3) -> dict:
    seq, head_dim, left, right, mask_kind, bias_k, scale = case
    torch.manual_seed(seq + head_dim)
    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device).to(dtype) for _ in range(3))
    mask = make_mask(torch, mask_kind, batch, seq, device)
    bias = None if bias_k is None else torch.randn(heads, 2 * bias_k + 1, device=device).to(dtype)
    args = dict(window_left=left, window_right=right, key_padding_mask=mask, rel_bias=bias, scale=scale)
    expected = ops.local_window_attention(q, k, v, **args)
    start = now()
    out = ops.local_window_attention(q, k, v, **args, backend="triton")
    if device == "cuda":
        torch.cuda.synchronize()
    record = {"first_call_s": round(now() - start, 3)}
    tol = tolerances(dtype_name, LOCAL_FP32_TOL, float(v.float().abs().max()))
    record.update(compare(torch, out, expected, tol, mask))
    return record


def run_landmark_case(torch, ops, device, dtype_name, dtype, case, heads=2, batch=3) -> dict:
    seq, head_dim, landmarks, iterations, mask_kind, bias_k = case
    torch.manual_seed(seq + head_dim + 1)
    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device).to(dtype) for _ in range(3))
    mask = make_mask(torch, mask_kind, batch, seq, device)
    bias = None if bias_k is None else torch.randn(heads, 2 * bias_k + 1, device=device).to(dtype)
    args = dict(num_landmarks=landmarks, pinv_iterations=iterations, key_padding_mask=mask, rel_bias=bias)
    expected = ops.landmark_attention(q, k, v, **args)
    start = now()
    out = ops.landmark_attention(q, k, v, **args, backend="triton")
    if device == "cuda":
        torch.cuda.synchronize()
    record = {"first_call_s": round(now() - start, 3)}
    record.update(compare(torch, out, expected, tolerances(dtype_name, LANDMARK_FP32_TOL), mask))
    return record


def stage_triton(device: str, dtypes: list[str], dry_run: bool, deadline: Deadline, reserve_s: float) -> dict:
    """Every case in every dtype; cases left when only ``reserve_s`` seconds remain are skipped."""
    import torch

    from seo_export import ops

    torch_dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    local_cases = DRY_LOCAL_CASES if dry_run else LOCAL_CASES
    landmark_cases = DRY_LANDMARK_CASES if dry_run else LANDMARK_CASES
    plan = [("local_window", name, case, run_local_case) for name, case in local_cases.items()]
    plan += [("landmark", name, case, run_landmark_case) for name, case in landmark_cases.items()]
    results = []
    for dtype_name in dtypes:
        for op, name, case, run in plan:
            record = {"op": op, "case": name, "dtype": dtype_name, "params": list(case)}
            if deadline.left() < reserve_s:
                record.update(passed=None, skipped="out of time")
            else:
                try:
                    record.update(run(torch, ops, device, dtype_name, torch_dtypes[dtype_name], case))
                except Exception as exc:
                    record.update(passed=False, error=first_line(exc), traceback=traceback.format_exc(limit=4))
            results.append(record)
    failed = [f"{r['op']}/{r['case']}/{r['dtype']}" for r in results if r["passed"] is False]
    skipped = [f"{r['op']}/{r['case']}/{r['dtype']}" for r in results if r["passed"] is None]
    return {"cases": results, "passed": not failed, "failed": failed, "skipped_cases": skipped,
            "params_legend": {"local_window": "seq, head_dim, window_left, window_right, mask, bias K, scale",
                              "landmark": "seq, head_dim, num_landmarks, pinv_iterations, mask, bias K"}}


# ----------------------------------------------------------------------------- stage 2: AOT PTX through CuPy


def aot_configs(dry_run: bool):
    from seo_plugins.aot import KernelConfig

    if dry_run:
        return [KernelConfig("local_window", dtype="fp16", head_dim=8, window_left=3, window_right=0,
                             has_mask=True, has_bias=True, max_distance=2)]
    common = dict(head_dim=64, has_mask=True, has_bias=True)
    return [
        KernelConfig("local_window", dtype="fp16", window_left=64, window_right=64, max_distance=32, **common),
        KernelConfig("local_window", dtype="fp16", window_left=127, window_right=0, max_distance=0, **common),
        KernelConfig("local_window", dtype="bf16", window_left=64, window_right=64, max_distance=32, **common),
        # FP32 needs more than 48 KiB of shared memory: the launcher must opt in.
        KernelConfig("local_window", dtype="fp32", window_left=64, window_right=64, max_distance=32, **common),
        KernelConfig("landmark", dtype="fp16", num_landmarks=64, pinv_iterations=6, max_distance=32, **common),
        KernelConfig("landmark", dtype="bf16", num_landmarks=16, pinv_iterations=6, max_distance=0, **common),
    ]


COMPILE_SNIPPET = """
import dataclasses, json, sys
from seo_plugins.aot import KernelConfig, compile_kernels
configs = [KernelConfig(**c) for c in json.loads(sys.argv[3])]
compile_kernels(configs, archs=(sys.argv[2],), out_dir=sys.argv[1], jobs=int(sys.argv[4]))
"""


def compile_in_subprocess(configs, arch: str, out_dir: Path, jobs: int) -> None:
    """Compile without TRITON_INTERPRET (this process may have loaded the interpreter)."""
    import dataclasses

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    payload = json.dumps([dataclasses.asdict(c) for c in configs])
    result = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET, str(out_dir), arch, payload, str(jobs)],
                            env=env, capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        raise RuntimeError(f"compiling failed: {result.stderr.strip().splitlines()[-1] if result.stderr else '?'}")


def load_cupy_kernel(cupy, ptx_path: Path, kernel: str, shared: int):
    """(module, function, how) for the PTX entry ``kernel``, allowed ``shared`` bytes of dynamic shared memory."""
    limit_attribute = "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES"
    try:
        module = cupy.RawModule(path=str(ptx_path))  # loads (and the driver JIT-compiles) the PTX lazily
        function = module.get_function(kernel)
        if shared > 48 * 1024:
            function.max_dynamic_shared_size_bytes = shared
        return module, function, "RawModule(path=...)"
    except AttributeError:  # an older CuPy: load the PTX image through the driver API
        module = cupy.cuda.function.Module()
        module.load(ptx_path.read_bytes() + b"\0")
        function = module.get_function(kernel)
        if shared > 48 * 1024:
            cupy.cuda.driver.funcSetAttribute(function.ptr, getattr(cupy.cuda.driver, limit_attribute), shared)
        return module, function, "Module.load"


def launch_cupy(cupy, np, function, entry: dict, grid, tensors: dict, batch_heads_seq, with_scratch: bool):
    """Launch with TensorRT's argument order: inputs, scalars, outputs (+ zero scratch pointers)."""
    import torch

    _, heads, seq = batch_heads_seq
    values = {"num_heads": np.int32(heads), "seq_len": np.int32(seq)}
    args = []
    for arg in entry["args"]:
        if arg["role"] == "scratch":
            if with_scratch:
                args.append(np.uint64(0))
        elif arg["role"] == "scalar":
            args.append(values[arg["name"]])
        else:
            args.append(np.uint64(tensors[arg["name"]].data_ptr()))
    torch.cuda.synchronize()
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    with stream:
        function(tuple(grid), tuple(entry["block"]), tuple(args), shared_mem=entry["shared_mem_bytes"])
    torch.cuda.synchronize()


def stage_aot(arch: str, out_dir: Path, dry_run: bool, deadline: Deadline) -> dict:
    import numpy as np
    import torch

    from seo_export import ops
    from seo_plugins.aot import drop_unused_scratch_params, load_manifest, ptx_entry_params
    from seo_plugins.launch import eval_shape_expr

    configs = aot_configs(dry_run)
    work = Path(tempfile.mkdtemp(prefix="seo_aot_"))
    start = now()
    compile_in_subprocess(configs, arch, work, jobs=min(len(configs), os.cpu_count() or 1, 8))
    manifest = load_manifest(work)
    record = {"arch": arch, "compile_s": round(now() - start, 2), "kernels": []}
    atomic_write_json(out_dir / "aot_manifest.json", manifest)
    cupy = None
    if not dry_run:
        try:
            import cupy
        except ImportError as exc:
            record.update(passed=False, error=f"CuPy is not importable: {exc}")
            return record
        record["cupy_version"] = cupy.__version__
    torch_dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    shapes = [(2, 4, 300), (1, 4, 1)]
    for entry in manifest["kernels"]:
        config = entry["config"]
        kernel_record = {"name": entry["name"], "kernel": entry["kernel"],
                         "shared_mem_bytes": entry["shared_mem_bytes"], "block": entry["block"],
                         "grid": entry["grid"]["expr"], "ptx_isa": entry["ptx_isa"], "target": entry["target"],
                         "launches": []}
        record["kernels"].append(kernel_record)
        try:
            ptx_path = work / entry["ptx"]
            stripped = drop_unused_scratch_params(ptx_path.read_text(), entry)
            stripped_path = work / f"{entry['name']}.trt.ptx"
            stripped_path.write_text(stripped)
            own = [a for a in entry["args"] if a["role"] != "scratch"]
            kernel_record["stripped_params"] = len(ptx_entry_params(stripped, entry["kernel"]))
            kernel_record["stripped_params_ok"] = kernel_record["stripped_params"] == len(own)
            if dry_run:
                kernel_record["launches"] = "skipped (dry run: no GPU)"
                kernel_record["passed"] = kernel_record["stripped_params_ok"]
                continue
            if deadline.left() < 20:
                kernel_record.update(passed=False, error="skipped: out of time")
                continue
            variants = {"with_scratch": (ptx_path, True), "tensorrt_stripped": (stripped_path, False)}
            loaded = {name: load_cupy_kernel(cupy, path, entry["kernel"], entry["shared_mem_bytes"])
                      for name, (path, _) in variants.items()}
            kernel_record["loader"] = loaded["with_scratch"][2]
            dtype = torch_dtypes[config["dtype"]]
            for batch, heads, seq in shapes:
                torch.manual_seed(seq)
                d = config["head_dim"]
                q, k, v = (torch.randn(batch, heads, seq, d, device="cuda").to(dtype) for _ in range(3))
                mask = make_mask(torch, "random", batch, seq, "cuda")
                bias = torch.randn(heads, 2 * config["max_distance"] + 1, device="cuda").to(dtype)
                scale = config["scale"]
                if config["op"] == "local_window":
                    args = dict(window_left=config["window_left"], window_right=config["window_right"],
                                key_padding_mask=mask, rel_bias=bias, scale=scale)
                    expected = ops.local_window_attention(q, k, v, **args)
                    jit = ops.local_window_attention(q, k, v, **args, backend="triton")
                    tol = tolerances(config["dtype"], LOCAL_FP32_TOL, float(v.float().abs().max()))
                else:
                    args = dict(num_landmarks=config["num_landmarks"], pinv_iterations=config["pinv_iterations"],
                                key_padding_mask=mask, rel_bias=bias, scale=scale)
                    expected = ops.landmark_attention(q, k, v, **args)
                    jit = ops.landmark_attention(q, k, v, **args, backend="triton")
                    tol = tolerances(config["dtype"], LANDMARK_FP32_TOL)
                grid = [eval_shape_expr(e, dict(B=batch, H=heads, S=seq)) for e in entry["grid"]["expr"]]
                for variant, (_, with_scratch) in variants.items():
                    out = torch.full_like(q, float("nan"))
                    tensors = {"q": q, "k": k, "v": v, "key_padding_mask": mask.to(torch.int8).contiguous(),
                               "rel_bias": bias, "out": out}
                    launch_cupy(cupy, np, loaded[variant][1], entry, grid, tensors, (batch, heads, seq),
                                with_scratch)
                    launch = {"variant": variant, "shape": [batch, heads, seq], "grid": grid,
                              "max_abs_diff_vs_triton_jit": float((out.float() - jit.float()).abs().max())}
                    launch.update(compare(torch, out, expected, tol, mask))
                    kernel_record["launches"].append(launch)
            kernel_record["passed"] = all(launch["passed"] for launch in kernel_record["launches"])
        except Exception as exc:
            kernel_record.update(passed=False, error=first_line(exc), traceback=traceback.format_exc(limit=4))
    failed = [k["name"] for k in record["kernels"] if not k.get("passed")]
    record.update(passed=not failed, failed=failed)
    return record


# ----------------------------------------------------------------------------- stage 3: timing


def stage_timing(deadline: Deadline, rounds: int, seqs, progress=lambda record: None) -> dict:
    """``progress(record)`` is called after every size, so a hard stop keeps what was measured."""
    import torch
    import torch.nn.functional as F

    from seo_export import ops

    cfg = dict(TIMING, seqs=list(seqs))
    left, right = cfg["window_left"], cfg["window_right"]
    band = left + right + 1
    batch, heads, head_dim = cfg["batch"], cfg["heads"], cfg["head_dim"]
    scale = head_dim ** -0.5
    record = {"config": cfg, "band_width": band, "dtype": "fp16", "rounds": rounds,
              "flops_formula": "4 * B * H * S * band_width * D", "sizes": []}
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
        flex_problem = None
    except Exception as exc:
        flex, flex_problem = None, f"FlexAttention unavailable: {first_line(exc)}"

    def sliding(b, h, q_idx, kv_idx):
        rel = kv_idx - q_idx
        return (rel >= -left) & (rel <= right)

    for seq in seqs:
        size = {"seq": seq, "flops": band_flops(batch, heads, seq, band, head_dim), "contenders": {}}
        record["sizes"].append(size)
        if deadline.left() < 15:
            size["skipped"] = "out of time"
            continue
        try:
            torch.manual_seed(seq)
            q, k, v = (torch.randn(batch, heads, seq, head_dim, device="cuda", dtype=torch.float16)
                       for _ in range(3))
            rel = torch.arange(seq, device="cuda")[None, :] - torch.arange(seq, device="cuda")[:, None]
            band_mask = (rel >= -left) & (rel <= right)
            del rel
            free = torch.cuda.mem_get_info()[0]
            runs = {"local_triton": lambda: ops.local_window_attention(
                q, k, v, window_left=left, window_right=right, scale=scale, backend="triton")}
            skipped = {}
            need = dense_eager_bytes(batch, heads, seq)
            if need > 0.8 * free:
                skipped["dense_eager"] = f"would need ~{need / 2**30:.1f} GiB of {free / 2**30:.1f} GiB free"
            else:
                def dense():
                    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
                    logits.masked_fill_(~band_mask, float("-inf"))
                    return torch.matmul(torch.softmax(logits, dim=-1), v)
                runs["dense_eager"] = dense
            need = sdpa_mask_bytes(seq) + 4 * batch * heads * seq * head_dim * 2
            if need > 0.8 * free:
                skipped["sdpa_band_mask"] = f"would need ~{need / 2**30:.1f} GiB of {free / 2**30:.1f} GiB free"
            else:
                runs["sdpa_band_mask"] = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask,
                                                                                scale=scale)
            if flex is None:
                skipped["flex_sliding_window"] = flex_problem
            else:
                block_mask = create_block_mask(sliding, B=None, H=None, Q_LEN=seq, KV_LEN=seq, device="cuda")
                runs["flex_sliding_window"] = lambda: flex(q, k, v, block_mask=block_mask, scale=scale)
            for name, reason in skipped.items():
                size["contenders"][name] = {"skipped": reason}

            # Warm-up (compiles Triton / torch.compile) and a cross-check against the local kernel.
            reference_out = None
            for name in list(runs):
                # torch.compile of FlexAttention takes tens of seconds on a fresh machine.
                needed = 45 if name == "flex_sliding_window" else 10
                if deadline.left() < needed:
                    size["contenders"][name] = {"skipped": f"out of time before warm-up (needs ~{needed} s)"}
                    del runs[name]
                    continue
                entry = size["contenders"].setdefault(name, {})
                try:
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    start = now()
                    out = runs[name]()
                    torch.cuda.synchronize()
                    entry["warmup_s"] = round(now() - start, 2)
                    entry["peak_extra_gib"] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)
                    if reference_out is None:
                        reference_out = out
                    else:
                        entry["max_abs_diff_vs_local"] = float((out.float() - reference_out.float()).abs().max())
                    del out
                except torch.cuda.OutOfMemoryError as exc:
                    entry["skipped"] = f"out of memory: {first_line(exc)}"
                    del runs[name]
                    torch.cuda.empty_cache()
                except Exception as exc:
                    entry["error"] = first_line(exc)
                    del runs[name]
            del reference_out

            # Interleaved rounds: every contender once per round, so drift hits all alike.
            times = {name: [] for name in runs}
            per_call = {name: size["contenders"][name].get("warmup_s", 0.01) for name in runs}
            for _ in range(rounds):
                if deadline.left() < 5:
                    size["rounds_cut_short"] = True
                    break
                for name, fn in runs.items():
                    iters = max(1, min(50, int(0.05 / max(per_call[name], 1e-5))))
                    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    begin.record()
                    for _ in range(iters):
                        fn()
                    end.record()
                    end.synchronize()
                    ms = begin.elapsed_time(end) / iters
                    times[name].append(ms)
                    per_call[name] = ms / 1000
            for name, samples in times.items():
                entry = size["contenders"][name]
                if samples:
                    median = statistics.median(samples)
                    entry.update(ms_median=round(median, 4), ms_min=round(min(samples), 4),
                                 ms_samples=[round(s, 4) for s in samples],
                                 tflops=round(size["flops"] / (median * 1e-3) / 1e12, 2))
            local_ms = size["contenders"].get("local_triton", {}).get("ms_median")
            if local_ms:
                for name, entry in size["contenders"].items():
                    if entry.get("ms_median") and name != "local_triton":
                        entry["local_speedup"] = round(entry["ms_median"] / local_ms, 2)
            runs.clear()  # drop the closures over q, k, v and the mask before the next size
            q = k = v = band_mask = block_mask = None
        except Exception as exc:
            size["error"] = first_line(exc)
            size["traceback"] = traceback.format_exc(limit=4)
        finally:
            torch.cuda.empty_cache()
            progress(record)
    return record


# ----------------------------------------------------------------------------- driver


def environment(device: str) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "device": device, "hostname": platform.node()}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as exc:
        env["triton"] = f"unavailable: {first_line(exc)}"
    try:
        import cupy

        env["cupy"] = cupy.__version__
    except Exception as exc:
        env["cupy"] = f"unavailable: {first_line(exc)}"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:
            pass
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           timeout=10).stdout.strip() or None
    except Exception:
        pass
    return env


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for device_check.json")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU only: the harness under TRITON_INTERPRET=1 at tiny sizes, PTX compiled not launched")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for all stages (default 240)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--seqs", default=",".join(map(str, TIMING["seqs"])), help="timing sequence lengths")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip: triton, aot, timing")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported anywhere
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out_dir = Path(args.out)
    out_path = out_dir / RESULT_NAME
    deadline = Deadline(args.budget)
    results = {"format": 1, "mode": "dry-run" if args.dry_run else "gpu", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "budget_s": args.budget, "stages": {}}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    try:
        import torch
    except Exception as exc:
        results.update(status="setup_error", error=f"PyTorch is not importable: {first_line(exc)}")
        atomic_write_json(out_path, results)
        print(f"device_check: {results['error']}", file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        why = "PyTorch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
        results.update(status="no_gpu", error=f"{why} (torch {torch.__version__})")
        results["environment"] = environment("cpu")
        atomic_write_json(out_path, results)
        print(f"device_check: {why} (torch {torch.__version__}): this check needs the GPU machine; "
              f"run with --dry-run to exercise the harness on CPU. Wrote {out_path}", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    results["environment"] = environment(device)
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        arch = f"sm_{major}{minor}"
    else:
        arch = "sm_80"

    def run_stage(name, fn):
        if name in skip:
            results["stages"][name] = {"skipped": "--skip"}
            return
        start = now()
        try:
            results["stages"][name] = fn()
        except Exception as exc:
            results["stages"][name] = {"passed": False, "error": first_line(exc),
                                       "traceback": traceback.format_exc(limit=6)}
        results["stages"][name]["seconds"] = round(now() - start, 1)
        atomic_write_json(out_path, results)

    dtypes = ["fp16", "bf16"]
    run_stage("triton", lambda: stage_triton(device, dtypes, args.dry_run, deadline, reserve_s=0.5 * args.budget))
    run_stage("aot", lambda: stage_aot(arch, out_dir, args.dry_run, deadline))
    if args.dry_run:
        seqs = [int(s) for s in args.seqs.split(",") if s]
        results["stages"]["timing"] = {
            "skipped": "dry run: no GPU",
            "plan": [{"seq": s, "flops": band_flops(TIMING["batch"], TIMING["heads"], s,
                                                    TIMING["window_left"] + TIMING["window_right"] + 1,
                                                    TIMING["head_dim"]),
                      "dense_eager_gib": round(dense_eager_bytes(TIMING["batch"], TIMING["heads"], s) / 2**30, 1)}
                     for s in seqs],
        }
    else:
        def progress(record):
            results["stages"]["timing"] = record
            atomic_write_json(out_path, results)

        seqs = [int(s) for s in args.seqs.split(",") if s]
        run_stage("timing", lambda: stage_timing(deadline, args.rounds, seqs, progress))

    correctness = [results["stages"][s] for s in ("triton", "aot") if "skipped" not in results["stages"][s]]
    passed = all(stage.get("passed") for stage in correctness)
    results.update(status="passed" if passed else "failed", seconds=round(now() - deadline.start, 1))
    atomic_write_json(out_path, results)
    print_summary(results, out_path)
    return 0 if passed else 1


def print_summary(results: dict, path: Path) -> None:
    env = results.get("environment", {})
    print(f"device_check ({results['mode']}) on {env.get('gpu', env.get('device'))}: {results['status']} "
          f"in {results.get('seconds')} s -> {path}")
    triton_stage = results["stages"].get("triton", {})
    if "cases" in triton_stage:
        ran = [c for c in triton_stage["cases"] if c["passed"] is not None]
        worst = max((c.get("worst_err_over_allowed", math.inf) for c in ran), default=0.0)
        print(f"  triton: {len(ran) - len(triton_stage['failed'])}/{len(ran)} cases pass "
              f"({len(triton_stage['skipped_cases'])} skipped for time); worst error / tolerance {worst:.3g}; "
              f"failed: {triton_stage['failed'] or 'none'}")
    elif triton_stage:
        print(f"  triton: {triton_stage.get('error') or triton_stage.get('skipped')}")
    aot = results["stages"].get("aot", {})
    if "kernels" in aot:
        print(f"  aot ({aot.get('arch')}): {len(aot['kernels']) - len(aot.get('failed', []))}/{len(aot['kernels'])} "
              f"kernels pass; failed: {aot.get('failed') or 'none'}{'; ' + aot['error'] if aot.get('error') else ''}")
    elif aot:
        print(f"  aot: {aot.get('error') or aot.get('skipped')}")
    timing = results["stages"].get("timing", {})
    for size in timing.get("sizes", []):
        parts = []
        for name in CONTENDERS:
            entry = size.get("contenders", {}).get(name, {})
            if "ms_median" in entry:
                parts.append(f"{name} {entry['ms_median']:.3f} ms ({entry['tflops']} TFLOP/s)")
            elif entry:
                parts.append(f"{name} -- {entry.get('skipped') or entry.get('error')}")
        print(f"  S={size['seq']}: " + ("; ".join(parts) or size.get("skipped") or size.get("error", "")))
    if timing.get("skipped") or timing.get("error"):
        print(f"  timing: {timing.get('skipped') or timing.get('error')}")


if __name__ == "__main__":
    sys.exit(main())
