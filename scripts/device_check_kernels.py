"""The device check's kernel timings: the local kernel against dense, SDPA and FlexAttention, and the
landmark kernel against one dense FP16 GEMM of the same useful FLOPs.

Both run on the GPU in FP16 (the local kernel in BF16 too), or in a dry run on the CPU at tiny sizes
under Triton's interpreter (FlexAttention uncompiled), where times mean nothing but every line runs.
"""

from __future__ import annotations

import warnings

from device_check_common import PEAK_TFLOPS, first_line, free_bytes, graphed, size_attempt, time_contenders, tflops

# B, H, D, band (window_left + window_right + 1 = 256), dtype FP16.
LOCAL = dict(batch=1, heads=16, head_dim=64, window_left=128, window_right=127, seqs=(4096, 16384, 32768))
DRY_LOCAL = dict(batch=1, heads=2, head_dim=16, window_left=8, window_right=7, seqs=(40,))
LOCAL_CONTENDERS = ("local_triton", "local_triton_bf16", "dense_eager", "sdpa_band_mask", "flex_sliding_window")
# Goals (issue 16): the local kernel at least as fast as FlexAttention's sliding window at 16k and 32k,
# and at least 40% of the BF16 tensor-core peak on the band's useful FLOPs.
FLEX_GOAL_SEQS, PEAK_GOAL = (16384, 32768), 0.4

LANDMARK = dict(batch=1, heads=16, head_dim=64, num_landmarks=64, pinv_iterations=6, seqs=(4096, 16384, 32768))
DRY_LANDMARK = dict(batch=1, heads=2, head_dim=16, num_landmarks=4, pinv_iterations=2, seqs=(40,))
LANDMARK_CONTENDERS = ("landmark_triton", "landmark_triton_graph", "landmark_reference", "gemm_shaped", "gemm_square")
# Goal: at 32k within 2x of one dense FP16 GEMM of the same useful FLOPs.
GEMM_GOAL_SEQ, GEMM_GOAL_RATIO = 32768, 2.0


def by_priority(seqs, goal_seqs) -> list[int]:
    """The goals' lengths first (so a short budget still measures them), then the others, each in given order."""
    return [s for s in seqs if s in goal_seqs] + [s for s in seqs if s not in goal_seqs]


def band_flops(batch: int, heads: int, seq: int, band: int, head_dim: int) -> int:
    """FLOPs of banded attention: QK^T and PV over ``band`` keys per query, 2 FLOPs per multiply-add each."""
    return 4 * batch * heads * seq * band * head_dim


def dense_eager_bytes(batch: int, heads: int, seq: int, elem_bytes: int = 2) -> int:
    """Peak extra memory of eager masked attention: the [B, H, S, S] logits and probabilities, and the mask."""
    return 2 * batch * heads * seq * seq * elem_bytes + 2 * seq * seq


def sdpa_mask_bytes(seq: int) -> int:
    """The [S, S] bool band mask, and the additive float mask SDPA may make from it."""
    return seq * seq * (1 + 4)


def landmark_flops(batch: int, heads: int, seq: int, landmarks: int, head_dim: int, iterations: int) -> int:
    """Useful FLOPs of landmark attention per call: Q K~^T, Q~ K^T, A3 V and A1 W are [S, L, D] products
    (8 S L D); Q~ K~^T and pinv(A2) (A3 V) are [L, L, D] (4 L^2 D); each Newton-Schulz iteration
    multiplies four [L, L] matrices (8 L^3). Segment means and softmaxes are not counted."""
    per_head = 8 * seq * landmarks * head_dim + 4 * landmarks**2 * head_dim + 8 * iterations * landmarks**3
    return batch * heads * per_head


def gemm_shapes(flops: int, batch_heads: int, seq: int, head_dim: int) -> dict:
    """Two dense GEMMs of about ``flops``: batched [BH, S, D] x [BH, D, n] (the landmark products' operands),
    and one square [m, m] x [m, m] (the best case for tensor cores); m and n rounded to multiples of 16."""
    n = max(16, 16 * round(flops / (2 * batch_heads * seq * head_dim) / 16))
    m = max(16, 16 * round((flops / 2) ** (1 / 3) / 16))
    return {"gemm_shaped": {"shape": [batch_heads, seq, head_dim, n], "flops": 2 * batch_heads * seq * head_dim * n},
            "gemm_square": {"shape": [m, m, m], "flops": 2 * m**3}}


def finish_sizes(size: dict, flops: int, baseline: str) -> None:
    """TFLOP/s on the useful FLOPs and the fraction of the tensor-core peak, and each contender's time over
    ``baseline``'s (``<baseline>_speedup``: above 1 when the baseline is faster)."""
    base_ms = size["contenders"].get(baseline, {}).get("ms_median")
    for name, entry in size["contenders"].items():
        if entry.get("ms_median"):
            entry["tflops"] = tflops(flops, entry["ms_median"])
            entry["peak_fraction"] = round(entry["tflops"] / PEAK_TFLOPS, 4)
            if base_ms and name != baseline:
                entry[f"{baseline}_speedup"] = round(entry["ms_median"] / base_ms, 2)


def stage_local(deadline, rounds: int, seqs, device: str, dry_run: bool, progress=lambda record: None) -> dict:
    """``progress(record)`` is called after every size, so a hard stop keeps what was measured."""
    import torch
    import torch.nn.functional as F

    from seo_export import ops

    cfg = dict(DRY_LOCAL if dry_run else LOCAL)
    cfg["seqs"] = list(cfg["seqs"] if dry_run else by_priority(seqs, FLEX_GOAL_SEQS))
    left, right = cfg["window_left"], cfg["window_right"]
    band = left + right + 1
    batch, heads, head_dim = cfg["batch"], cfg["heads"], cfg["head_dim"]
    scale = head_dim ** -0.5
    record = {"config": cfg, "band_width": band, "dtype": "fp16 (local_triton_bf16: bf16)", "rounds": rounds,
              "flops_formula": "4 * B * H * S * band_width * D", "peak_tflops": PEAK_TFLOPS, "sizes": []}
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        # Uncompiled in a dry run: torch.compile on a CPU needs a C++ toolchain and minutes.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        flex = flex_attention if dry_run else torch.compile(flex_attention, dynamic=False)
        flex_problem = None
    except Exception as exc:
        flex, flex_problem = None, f"FlexAttention unavailable: {first_line(exc)}"

    def sliding(b, h, q_idx, kv_idx):
        rel = kv_idx - q_idx
        return (rel >= -left) & (rel <= right)

    for seq in cfg["seqs"]:
        size = {"seq": seq, "flops": band_flops(batch, heads, seq, band, head_dim), "contenders": {}}
        record["sizes"].append(size)
        if deadline.left() < 15:
            size["skipped"] = "out of time"
            continue
        with size_attempt(torch, device, size, lambda: progress(record)):
            torch.manual_seed(seq)
            q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=torch.float16) for _ in range(3))
            qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
            rel = torch.arange(seq, device=device)[None, :] - torch.arange(seq, device=device)[:, None]
            band_mask = (rel >= -left) & (rel <= right)
            del rel
            free = free_bytes(torch, device)
            window = dict(window_left=left, window_right=right, scale=scale, backend="triton")
            runs = {"local_triton": lambda: ops.local_window_attention(q, k, v, **window),
                    "local_triton_bf16": lambda: ops.local_window_attention(qb, kb, vb, **window)}
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
            block_mask = None
            if flex is None:
                skipped["flex_sliding_window"] = flex_problem
            else:
                block_mask = create_block_mask(sliding, B=None, H=None, Q_LEN=seq, KV_LEN=seq, device=device)
                runs["flex_sliding_window"] = lambda: flex(q, k, v, block_mask=block_mask, scale=scale)
            for name, reason in skipped.items():
                size["contenders"][name] = {"skipped": reason}

            reference = {}

            def cross_check(name, out):  # every contender against the local kernel's FP16 output
                if not reference:
                    reference["out"] = out
                else:
                    size["contenders"][name]["max_abs_diff_vs_local"] = float(
                        (out.float() - reference["out"].float()).abs().max())

            # torch.compile of FlexAttention takes tens of seconds on a fresh machine, less once warm.
            warm = any("ms_median" in s["contenders"].get("flex_sliding_window", {}) for s in record["sizes"])
            needs = {"flex_sliding_window": 10 if dry_run or warm else 45}
            size.update(time_contenders(torch, runs, size["contenders"], deadline, rounds, device, needs,
                                        on_output=cross_check))
            reference.clear()
            finish_sizes(size, size["flops"], "local_triton")
            runs.clear()  # drop the closures over q, k, v and the masks before the next size
            q = k = v = qb = kb = vb = band_mask = block_mask = None
    record["goals"] = local_goals(record["sizes"], cfg["seqs"] if dry_run else FLEX_GOAL_SEQS)
    progress(record)
    return record


def local_goals(sizes: list[dict], flex_seqs) -> list[dict]:
    goals = []
    for size in sizes:
        contenders = size.get("contenders", {})
        local = contenders.get("local_triton", {})
        if not local.get("ms_median"):
            continue
        flex = contenders.get("flex_sliding_window", {})
        if size["seq"] in flex_seqs and flex.get("ms_median"):
            goals.append({"goal": "local kernel at least as fast as FlexAttention's sliding window", "seq": size["seq"],
                          "value": round(flex["ms_median"] / local["ms_median"], 2), "target": ">= 1.0",
                          "met": local["ms_median"] <= flex["ms_median"]})
        best = max(contenders.get(n, {}).get("peak_fraction") or 0.0 for n in ("local_triton", "local_triton_bf16"))
        goals.append({"goal": f"local kernel at least {PEAK_GOAL:.0%} of the tensor-core peak ({PEAK_TFLOPS:.0f} "
                              "TFLOP/s) on the band's useful FLOPs (best of FP16 and BF16)", "seq": size["seq"],
                      "value": best, "target": f">= {PEAK_GOAL}", "met": best >= PEAK_GOAL})
    return goals


def stage_landmark(deadline, rounds: int, seqs, device: str, dry_run: bool, progress=lambda record: None) -> dict:
    """The landmark kernel (seo_plugins' launcher, its JIT path) against two GEMMs of the same useful FLOPs,
    and the reference op for scale. The GEMMs' times are rescaled to exactly the kernel's FLOPs."""
    import torch

    from seo_export import ops
    from seo_plugins.kernels.landmark import landmark_attention

    cfg = dict(DRY_LANDMARK if dry_run else LANDMARK)
    cfg["seqs"] = list(cfg["seqs"] if dry_run else by_priority(seqs, (GEMM_GOAL_SEQ,)))
    batch, heads, head_dim = cfg["batch"], cfg["heads"], cfg["head_dim"]
    landmarks, iterations = cfg["num_landmarks"], cfg["pinv_iterations"]
    scale = head_dim ** -0.5
    record = {"config": cfg, "dtype": "fp16", "rounds": rounds, "peak_tflops": PEAK_TFLOPS,
              "flops_formula": "B * H * (8 S L D + 4 L^2 D + 8 iterations L^3)", "sizes": []}
    goal_seq = cfg["seqs"][-1] if dry_run else GEMM_GOAL_SEQ
    for seq in cfg["seqs"]:
        flops = landmark_flops(batch, heads, seq, landmarks, head_dim, iterations)
        gemms = gemm_shapes(flops, batch * heads, seq, head_dim)
        size = {"seq": seq, "flops": flops, "gemms": gemms, "contenders": {}}
        record["sizes"].append(size)
        if deadline.left() < 15:
            size["skipped"] = "out of time"
            continue
        with size_attempt(torch, device, size, lambda: progress(record)):
            torch.manual_seed(seq)
            q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=torch.float16) for _ in range(3))
            args = dict(num_landmarks=landmarks, pinv_iterations=iterations, scale=scale)
            bh, _, _, n = gemms["gemm_shaped"]["shape"]
            a, b = torch.randn(bh, seq, head_dim, device=device, dtype=torch.float16), \
                torch.randn(bh, head_dim, n, device=device, dtype=torch.float16)
            m = gemms["gemm_square"]["shape"][0]
            x, y = (torch.randn(m, m, device=device, dtype=torch.float16) for _ in range(2))
            runs = {"landmark_triton": lambda: landmark_attention(q, k, v, landmarks, iterations, None, None,
                                                                  scale=scale),
                    "landmark_reference": lambda: ops.landmark_attention(q, k, v, **args),
                    "gemm_shaped": lambda: torch.bmm(a, b),
                    "gemm_square": lambda: torch.mm(x, y)}
            if device == "cuda":  # the four launches without Python's overhead between them; captured last
                runs["landmark_triton_graph"] = graphed(torch, runs["landmark_triton"])
            reference = {}

            def cross_check(name, out):
                if name.startswith("landmark_triton"):
                    reference.setdefault("out", out)
                elif name == "landmark_reference" and reference:
                    size["contenders"][name]["max_abs_diff_vs_triton"] = float(
                        (out.float() - reference["out"].float()).abs().max())

            # The four JIT kernels compile on their first call.
            needs = {"landmark_triton": 10 if dry_run else 20}
            size.update(time_contenders(torch, runs, size["contenders"], deadline, rounds, device, needs,
                                        on_output=cross_check))
            reference.clear()
            finish_sizes(size, flops, "landmark_triton")
            kernel_ms = {ratio: size["contenders"].get(name, {}).get("ms_median") for ratio, name in
                         (("kernel_time_ratio", "landmark_triton"), ("graphed_kernel_time_ratio",
                                                                     "landmark_triton_graph"))}
            for name, gemm in gemms.items():
                entry = size["contenders"].get(name, {})
                if entry.get("ms_median"):  # the GEMM's own rate, and its time at exactly the kernel's FLOPs
                    entry["tflops"] = tflops(gemm["flops"], entry["ms_median"])
                    entry["peak_fraction"] = round(entry["tflops"] / PEAK_TFLOPS, 4)
                    entry["ms_at_kernel_flops"] = round(entry["ms_median"] * flops / gemm["flops"], 4)
                    for ratio, ms in kernel_ms.items():
                        if ms:
                            entry[ratio] = round(ms / entry["ms_at_kernel_flops"], 2)
            runs.clear()
            q = k = v = a = b = x = y = None
    record["goals"] = landmark_goals(record["sizes"], goal_seq)
    progress(record)
    return record


def landmark_goals(sizes: list[dict], goal_seq: int) -> list[dict]:
    """Kernel time over GEMM time at equal FLOPs, for both GEMMs; the CUDA-graph time where measured (the
    kernels' own time: eager launches add Python's overhead between the four kernels)."""
    goals = []
    for size in sizes:
        for name in ("gemm_shaped", "gemm_square") if size["seq"] == goal_seq else ():
            entry = size["contenders"].get(name, {})
            how = "CUDA graph" if "graphed_kernel_time_ratio" in entry else "eager launches"
            ratio = entry.get("graphed_kernel_time_ratio", entry.get("kernel_time_ratio"))
            if ratio is None:
                continue
            shape = "batched [BH, S, D] x [BH, D, n]" if name == "gemm_shaped" else "square"
            goals.append({"goal": f"landmark kernel ({how}) within {GEMM_GOAL_RATIO:g}x of one dense FP16 GEMM "
                                  f"of the same useful FLOPs ({name}: {shape})",
                          "seq": size["seq"], "value": ratio, "target": f"<= {GEMM_GOAL_RATIO:g}",
                          "met": ratio <= GEMM_GOAL_RATIO})
    return goals


def summary_lines(stage: dict, contenders, label: str) -> list[str]:
    """One line per size: each contender's median time and TFLOP/s, or why it is missing."""
    lines = []
    for size in stage.get("sizes", []):
        parts = []
        for name in contenders:
            entry = size.get("contenders", {}).get(name, {})
            if "ms_median" in entry:
                parts.append(f"{name} {entry['ms_median']:.3f} ms ({entry.get('tflops')} TFLOP/s)")
            elif entry:
                parts.append(f"{name} -- {entry.get('skipped') or entry.get('error')}")
        missing = size.get("skipped") or size.get("error", "")
        lines.append(f"  {label} S={size['seq']}: " + ("; ".join(parts) or missing))
    return lines


def goal_line(goal: dict) -> str:
    where = f"S={goal['seq']}" + (f" B={goal['batch']}" if "batch" in goal else "")
    verdict = "met" if goal["met"] else "NOT met"
    return f"  goal {verdict} at {where}: {goal['goal']}: {goal['value']} ({goal['target']})"


__all__ = ["LANDMARK", "LANDMARK_CONTENDERS", "LOCAL", "LOCAL_CONTENDERS", "band_flops", "dense_eager_bytes",
           "goal_line", "landmark_flops", "stage_landmark", "stage_local", "summary_lines"]
