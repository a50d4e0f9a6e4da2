"""The prepared GPU check: Triton kernels, the AOT PTX TensorRT would launch, and timings.

Run through ``scripts/device_check.sh OUTDIR`` (the repository on PYTHONPATH, nothing
installed). Stages, each recording its own failure so the others still report:

1. ``triton``: the Triton kernels on the GPU against the reference ops in FP16 and BF16 over
   the edge cases (S < window, S = 1, odd lengths, fully padded rows, causal, mask + bias).
2. ``aot``: kernels compiled by ``seo_plugins.aot`` for this GPU's arch, loaded from PTX with
   CuPy and launched with the manifest's grid, block and shared memory: with Triton's two
   scratch pointers (zeros), and stripped of them exactly as TensorRT's AOT launcher calls it.
3. ``timing``: the local kernel (FP16 and BF16) against eager masked dense attention, SDPA with a
   band mask and FlexAttention's sliding window at S = 4k, 16k, 32k (B=1, H=16, D=64, band 256),
   TFLOP/s and the fraction of the tensor-core peak on the band's FLOPs (device_check_kernels).
4. ``landmark``: the landmark kernel against a dense FP16 GEMM of the same useful FLOPs (batched
   like its products, and square) and the reference op, same sizes, L=64 (device_check_kernels).
5. ``model``: the whole model, eager FP16 with SDPA dense attention against the model with the
   Triton kernels (``--backend torch-triton``), local and landmark, B = 1 and 4, S = 16k, 32k,
   4k, after a parity check of the kernels inside the model (device_check_model).

Timings are interleaved rounds timed with CUDA events; each stage stops when its share of the
budget is spent, recording what it skipped, and the goals of issue 16 are judged where measured.
Results go to OUTDIR/device_check.json (rewritten atomically after every stage and size). Exit
status: 0 all correctness checks passed, 1 a correctness check (triton, aot, model parity) failed
or its stage broke, 2 no GPU. ``--dry-run`` exercises every stage on CPU (Triton's interpreter,
tiny sizes, PTX compiled but not launched) so the script is tested where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import device_check_kernels as kernels
import device_check_model as whole_model
from device_check_common import Deadline, atomic_write_json, first_line, now

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

# ----------------------------------------------------------------------------- small helpers


def tolerances(dtype_name: str, fp32_tol: float, rounded_operand_max: float = 0.0) -> dict:
    """As tests/plugins/test_kernels.py: FP32 reorderings; 16-bit output rounding (2u) plus, for the
    local kernel, P rounded to the value dtype (u * max|v|)."""
    if dtype_name == "fp32":
        return dict(atol=fp32_tol, rtol=fp32_tol)
    u = UNIT_ROUNDOFF[dtype_name]
    return dict(atol=fp32_tol + u * rounded_operand_max, rtol=2 * u)


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
    """What TensorRT's AOT path would launch. ``compile_kernels`` runs ptxas and refuses a kernel that
    spills or needs more than 48 KiB of shared memory (TensorRT's launcher does not opt in), so each of
    these must pass those checks for the GPU's arch before it is launched."""
    from seo_plugins.aot import KernelConfig
    from seo_plugins.launch import AOT_MAX_BLOCK_L

    if dry_run:
        return [KernelConfig("local_window", dtype="fp16", head_dim=8, window_left=3, window_right=0,
                             has_mask=True, has_bias=True, max_distance=2)]
    common = dict(head_dim=64, has_mask=True, has_bias=True)
    return [
        KernelConfig("local_window", dtype="fp16", window_left=64, window_right=64, max_distance=32, **common),
        KernelConfig("local_window", dtype="fp16", window_left=127, window_right=0, max_distance=0, **common),
        KernelConfig("local_window", dtype="bf16", window_left=64, window_right=64, max_distance=32, **common),
        # FP32 fits in 48 KiB since local_window_launch re-tiles it (32 KiB; it needed 49,408 B before).
        KernelConfig("local_window", dtype="fp32", window_left=64, window_right=64, max_distance=32, **common),
        # The AOT kernel takes at most AOT_MAX_BLOCK_L (32) landmarks; the zoo's 64 run on the JIT path,
        # which the triton and landmark stages check and time.
        KernelConfig("landmark", dtype="fp16", num_landmarks=AOT_MAX_BLOCK_L, pinv_iterations=6, max_distance=32,
                     **common),
        KernelConfig("landmark", dtype="bf16", num_landmarks=16, pinv_iterations=6, max_distance=0, **common),
        KernelConfig("landmark", dtype="fp32", num_landmarks=AOT_MAX_BLOCK_L, pinv_iterations=6, max_distance=32,
                     **common),
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


STAGES = ("triton", "aot", "timing", "landmark", "model")
#: Share of the budget each stage leaves for the stages after it (the rest flows on when a stage ends early);
#: aot, short and a correctness check, takes what it needs.
KEEP_FOR_LATER = {"triton": 0.7, "timing": 0.3, "landmark": 0.22, "model": 0.0}
#: Stages whose ``passed`` is a correctness verdict (the model stage's: its parity check).
CORRECTNESS = ("triton", "aot", "model")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for device_check.json")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU only: every stage under TRITON_INTERPRET=1 at tiny sizes, PTX compiled not launched")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for all stages (default 240)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7; 1 in a dry run)")
    parser.add_argument("--seqs", default=",".join(map(str, kernels.LOCAL["seqs"])),
                        help="sequence lengths of the timing, landmark and model stages (the GPU run's)")
    parser.add_argument("--skip", default="", help=f"comma-separated stages to skip: {', '.join(STAGES)}")
    return parser.parse_args(argv)


def timing_plan(seqs) -> list[dict]:
    """What the local timing stage measures on the GPU (recorded in a dry run, which runs tiny sizes)."""
    cfg = kernels.LOCAL
    band = cfg["window_left"] + cfg["window_right"] + 1
    return [{"seq": s, "flops": kernels.band_flops(cfg["batch"], cfg["heads"], s, band, cfg["head_dim"]),
             "dense_eager_gib": round(kernels.dense_eager_bytes(cfg["batch"], cfg["heads"], s) / 2**30, 1)}
            for s in seqs]


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
    results = {"format": 2, "mode": "dry-run" if args.dry_run else "gpu", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "budget_s": args.budget, "stages": {}}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted(skip - set(STAGES))
    if unknown:
        print(f"device_check: unknown stage {unknown[0]!r} in --skip; stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2

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

    def progress(name):
        def write(record):  # after every size: a hard stop keeps what was measured
            results["stages"][name] = record
            atomic_write_json(out_path, results)
        return write

    def share(name):
        return deadline.keeping(KEEP_FOR_LATER[name] * args.budget)

    seqs = [int(s) for s in args.seqs.split(",") if s]
    rounds = 1 if args.dry_run else args.rounds
    timed = {"timing": kernels.stage_local, "landmark": kernels.stage_landmark, "model": whole_model.stage_model}
    run_stage("triton", lambda: stage_triton(device, ["fp16", "bf16"], args.dry_run, deadline,
                                             reserve_s=KEEP_FOR_LATER["triton"] * args.budget))
    run_stage("aot", lambda: stage_aot(arch, out_dir, args.dry_run, deadline))  # short, and a correctness check
    for name, stage in timed.items():
        run_stage(name, lambda: stage(share(name), rounds, seqs, device, args.dry_run, progress(name)))
    if args.dry_run and "timing" not in skip:
        results["stages"]["timing"]["plan"] = timing_plan(seqs)

    correctness = [results["stages"][s] for s in CORRECTNESS if "skipped" not in results["stages"][s]]
    passed = all(stage.get("passed") for stage in correctness)
    results["goals"] = [goal for s in timed if s not in skip for goal in results["stages"][s].get("goals", [])]
    results.update(status="passed" if passed else "failed", seconds=round(now() - deadline.start, 1))
    atomic_write_json(out_path, results)
    print_summary(results, out_path)
    return 0 if passed else 1


def print_summary(results: dict, path: Path) -> None:
    env = results.get("environment", {})
    print(f"device_check ({results['mode']}) on {env.get('gpu', env.get('device'))}: {results['status']} "
          f"in {results.get('seconds')} s -> {path}")
    stages = results["stages"]
    triton_stage = stages.get("triton", {})
    if "cases" in triton_stage:
        ran = [c for c in triton_stage["cases"] if c["passed"] is not None]
        worst = max((c.get("worst_err_over_allowed", math.inf) for c in ran), default=0.0)
        print(f"  triton: {len(ran) - len(triton_stage['failed'])}/{len(ran)} cases pass "
              f"({len(triton_stage['skipped_cases'])} skipped for time); worst error / tolerance {worst:.3g}; "
              f"failed: {triton_stage['failed'] or 'none'}")
    elif triton_stage:
        print(f"  triton: {triton_stage.get('error') or triton_stage.get('skipped')}")
    aot = stages.get("aot", {})
    if "kernels" in aot:
        print(f"  aot ({aot.get('arch')}): {len(aot['kernels']) - len(aot.get('failed', []))}/{len(aot['kernels'])} "
              f"kernels pass; failed: {aot.get('failed') or 'none'}{'; ' + aot['error'] if aot.get('error') else ''}")
    elif aot:
        print(f"  aot: {aot.get('error') or aot.get('skipped')}")
    lines = [*kernels.summary_lines(stages.get("timing", {}), kernels.LOCAL_CONTENDERS, "local"),
             *kernels.summary_lines(stages.get("landmark", {}), kernels.LANDMARK_CONTENDERS, "landmark"),
             *whole_model.summary_lines(stages.get("model", {}))]
    for line in lines:
        print(line)
    for name in ("timing", "landmark", "model"):
        stage = stages.get(name, {})
        if stage.get("skipped") or (stage.get("error") and "sizes" not in stage):
            print(f"  {name}: {stage.get('skipped') or stage.get('error')}")
    for goal in results.get("goals", []):
        print(kernels.goal_line(goal))
    if results["mode"] == "dry-run" and results.get("goals"):
        print("  (dry run: tiny sizes in Triton's interpreter; the goal verdicts above mean nothing)")


if __name__ == "__main__":
    sys.exit(main())
