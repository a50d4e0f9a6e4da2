"""The device check's whole-model stage: eager FP16 with SDPA dense attention against the model with the
Triton kernels (what ``--backend torch-triton`` runs), local and landmark attention.

The three models share the zoo's default size (hidden 768, 12 layers, 12 heads, FFN 3072, window 128,
64 landmarks), sinusoidal positions, seeded weights, FP16 on the GPU. The dense baseline is the zoo's
standard attention computed by ``F.scaled_dot_product_attention`` without a mask (every token is real),
so PyTorch picks its fastest kernel (flash attention): the strongest dense baseline, not the masked
path the exporter uses. First a parity check at a small padded size: the kernels against the
reference ops in the same model, and the SDPA attention against the standard model's own.
"""

from __future__ import annotations

import traceback
import types

from device_check_common import first_line, size_attempt, time_contenders
from device_check_kernels import by_priority

MODEL = dict(batches=(1, 4), parity=(2, 1000))
DRY_MODEL = dict(batches=(1, 2), seqs=(16,), parity=(2, 19),
                 config=dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=100,
                             attention_window_size=8, attention_num_landmarks=4))
KINDS = {"sdpa_dense": "standard", "local_triton": "local", "landmark_triton": "sparse"}
CONTENDERS = tuple(KINDS)
GOAL_SEQ, GOAL_SPEEDUP = 16384, 3.0  # the local model at least 3x faster than eager SDPA at S = 16k
UNIT_ROUNDOFF_FP16 = 2.0**-11


def sdpa_attend(self, q, k, v, key_padding_mask, rel_bias, need_weights, query_plain):
    """MultiHeadAttention.attend by SDPA, unmasked (the stage feeds no padding, and no bias exists)."""
    import torch.nn.functional as F

    if key_padding_mask is not None or rel_bias is not None or need_weights:
        raise ValueError("the SDPA baseline takes no padding mask, relative bias or weights")
    return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=self.scale), None


def use_sdpa(model):
    from seo_export.models.attention import MultiHeadAttention

    for module in model.modules():
        if type(module) is MultiHeadAttention:
            module.attend = types.MethodType(sdpa_attend, module)
    return model


def build(kind: str, overrides: dict, device: str):
    import torch

    from seo_export.models.build import build_model
    from seo_export.models.config import TransformerConfig

    config = TransformerConfig(**overrides).replace(attention_type=kind, positional_encoding_type="sinusoidal",
                                                    dropout_rate=0.0, attention_dropout=0.0)
    with torch.device(device):  # initialised where it runs: seconds less on a GPU than on its host
        return build_model(config, 0).to(dtype=torch.float16).eval()


def forward(torch, model, ids, mask=None, backend="reference"):
    from seo_export.models.attention import ops_backend

    with torch.inference_mode(), ops_backend(backend):
        return model(ids, mask)["last_hidden_state"]


def parity(torch, models: dict, standard, batch: int, seq: int, layers: int, device: str) -> dict:
    """Kernels against the reference ops on a padded batch; SDPA against the model's own attention, unpadded.
    Tolerance: every layer rounds to FP16 and the two may round an attention output 1 ulp apart, which the
    layers after carry on: 8u per layer, relative to the largest output (a semantic error is O(1))."""
    gen = torch.Generator().manual_seed(seq)
    ids = torch.randint(1, 100, (batch, seq), generator=gen).to(device)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq // 2:] = 0
    mask = mask.to(device)
    checks = {}
    for name, model in models.items():
        if name == "sdpa_dense":
            expected = forward(torch, standard, ids)
            got = forward(torch, model, ids)
        else:
            expected = forward(torch, model, ids, mask)
            got = forward(torch, model, ids, mask, backend="triton")
        scale = float(expected.float().abs().max())
        tol = 8 * UNIT_ROUNDOFF_FP16 * layers * scale
        diff = float((got.float() - expected.float()).abs().max())
        finite = bool(torch.isfinite(got).all())
        checks[name] = {"max_abs_diff": diff, "max_abs_expected": scale, "tolerance": tol, "finite": finite,
                        "passed": finite and diff <= tol}
    return checks


def stage_model(deadline, rounds: int, seqs, device: str, dry_run: bool, progress=lambda record: None) -> dict:
    """``progress(record)`` after every (batch, seq), so a hard stop keeps what was measured."""
    import torch

    plan = dict(DRY_MODEL if dry_run else MODEL)
    overrides = plan.get("config", {})
    order = list(plan["seqs"] if dry_run else by_priority(seqs, (GOAL_SEQ,)))
    record = {"batches": list(plan["batches"]), "seqs": order, "dtype": "fp16", "rounds": rounds,
              "baseline": "sdpa_dense: the standard model, attention by F.scaled_dot_product_attention unmasked",
              "sizes": []}
    if deadline.left() < 20:  # building the models and the parity check alone take about that
        record["skipped"] = "out of time"
        return record
    models = {name: build(kind, overrides, device) for name, kind in KINDS.items()}
    config = models["local_triton"].config
    record["model"] = {k: getattr(config, k) for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                                                       "attention_window_size", "attention_num_landmarks",
                                                       "attention_pinv_iterations", "positional_encoding_type")}
    use_sdpa(models["sdpa_dense"])
    batch, seq = plan["parity"]
    try:  # the standard model with its own attention: what the SDPA baseline must compute
        standard = build("standard", overrides, device)
        record["parity"] = parity(torch, models, standard, batch, seq, config.num_layers, device)
        record["passed"] = all(check["passed"] for check in record["parity"].values())
    except Exception as exc:
        record.update(passed=False, error=first_line(exc), traceback=traceback.format_exc(limit=4))
    standard = None
    progress(record)

    for seq in order:
        for batch in plan["batches"]:
            size = {"batch": batch, "seq": seq, "contenders": {}}
            record["sizes"].append(size)
            if deadline.left() < 15:
                size["skipped"] = "out of time"
                continue
            with size_attempt(torch, device, size, lambda: progress(record)):
                torch.manual_seed(seq + batch)
                ids = torch.randint(1, config.vocab_size, (batch, seq), device=device)
                runs = {name: (lambda m=model, b="reference" if name == "sdpa_dense" else "triton":
                               forward(torch, m, ids, backend=b))
                        for name, model in models.items()}
                size.update(time_contenders(torch, runs, size["contenders"], deadline, rounds, device,
                                            {"landmark_triton": 10 if dry_run else 20}))
                runs.clear()
                ids = None
                finish_size(size)
    goal_seq = order[0] if dry_run else GOAL_SEQ
    record["goals"] = [
        {"goal": f"model with the local kernel at least {GOAL_SPEEDUP:g}x faster than eager FP16 SDPA",
         "seq": size["seq"], "batch": size["batch"], "value": speedup, "target": f">= {GOAL_SPEEDUP:g}",
         "met": speedup >= GOAL_SPEEDUP}
        for size in record["sizes"] if size["seq"] == goal_seq
        if (speedup := size["contenders"].get("local_triton", {}).get("speedup_vs_sdpa")) is not None
    ]
    progress(record)
    return record


def finish_size(size: dict) -> None:
    """Tokens per second, and each kernel model's speedup over SDPA (SDPA time / its time)."""
    sdpa = size["contenders"].get("sdpa_dense", {}).get("ms_median")
    for name, entry in size["contenders"].items():
        if entry.get("ms_median"):
            entry["tokens_per_s"] = round(size["batch"] * size["seq"] / (entry["ms_median"] * 1e-3))
            if sdpa and name != "sdpa_dense":  # 3 significant figures: interpreter dry runs reach 0.001x
                entry["speedup_vs_sdpa"] = float(f"{sdpa / entry['ms_median']:.3g}")


def summary_lines(stage: dict) -> list[str]:
    lines = []
    for name, check in stage.get("parity", {}).items():
        lines.append(f"  model parity {name}: {'pass' if check['passed'] else 'FAIL'} "
                     f"(max diff {check['max_abs_diff']:.3g}, tolerance {check['tolerance']:.3g})")
    if stage.get("error"):
        lines.append(f"  model: {stage['error']}")
    for size in sorted(stage.get("sizes", []), key=lambda s: (s["batch"], s["seq"])):
        parts = []
        for name in CONTENDERS:
            entry = size.get("contenders", {}).get(name, {})
            if "ms_median" in entry:
                speedup = f", {entry['speedup_vs_sdpa']}x SDPA" if "speedup_vs_sdpa" in entry else ""
                parts.append(f"{name} {entry['ms_median']:.2f} ms{speedup}")
            elif entry:
                parts.append(f"{name} -- {entry.get('skipped') or entry.get('error')}")
        lines.append(f"  model B={size['batch']} S={size['seq']}: "
                     + ("; ".join(parts) or size.get("skipped") or size.get("error", "")))
    return lines
