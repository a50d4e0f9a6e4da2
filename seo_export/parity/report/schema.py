"""The report document (schema_version "1", see SCHEMA.md): builders and a checker.

Reports are plain dicts of JSON types, so the same object feeds ``json.dumps``, the markdown
table and the HTML page; builders check what they build so a bad field fails where it is made.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from typing import Sequence

from seo_export import __version__
from seo_export.bench.timing import percentile
from seo_export.errors import UsageError
from seo_export.parity.metrics import plain_float

SCHEMA_VERSION = "1"
TOOL_NAME = "seo-export"
KINDS = ("validate", "bench")


class ReportSchemaError(UsageError):
    """A report that does not follow the schema (or follows another version of it)."""


# ----------------------------------------------------------------------------- environment

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_environment(threads: dict[str, int] | None = None) -> dict:
    """Versions, CPU/GPU and thread counts of this machine; ``threads`` adds e.g. ORT's settings."""
    from seo_export.cli.info import PACKAGES, package_version

    torch = sys.modules.get("torch")
    gpu = torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None
    thread_counts = {"torch": torch.get_num_threads()} if torch is not None else {}
    thread_counts.update(threads or {})
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "gpu": gpu,
        "threads": thread_counts,
        "packages": {name: package_version(name) for name in ("numpy", *PACKAGES)},
        "allocator": allocator_settings(),
    }


#: Environment variables that change how the C library or a preloaded malloc hands out memory.
ALLOCATOR_ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "TCMALLOC_")


def allocator_settings() -> dict:
    """The C library and the allocator settings in the environment. Eager PyTorch's CPU time
    depends on them: glibc's malloc maps every block over its mmap threshold (32 MB at most
    by default) afresh, so a [4, 12, 512, 512] float32 score matrix page-faults on each call."""
    name, version = platform.libc_ver()
    return {"libc": f"{name} {version}".strip() or None,
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ALLOCATOR_ENV_PREFIXES)}}


# ----------------------------------------------------------------------------- results

def make_variant(attention: str, positional: str, causal: bool = False) -> dict:
    return {"attention": attention, "positional": positional, "causal": bool(causal)}


def variant_label(v: dict) -> str:
    """'local/rotary' or 'local/rotary/causal': the name tables and plots use."""
    return f"{v['attention']}/{v['positional']}" + ("/causal" if v.get("causal") else "")


def make_input(batch: int, seq: int, name: str) -> dict:
    """An input case: ``name`` says why this length is tested (e.g. 'window+1')."""
    return {"batch": int(batch), "seq": int(seq), "name": name}


def validate_result(variant: dict, backend: str, input_case: dict, outputs: dict[str, dict], verdict, *,
                    backend_s: float | None = None, eager_s: float | None = None,
                    break_: dict | None = None) -> dict:
    """One variant x backend x input case. ``verdict`` is a ``tolerance.Verdict`` or its dict;
    ``input_case`` is ``make_input(...)``; ``outputs`` maps output names to ``metrics.compare`` dicts."""
    verdict = verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)
    speedup = eager_s / backend_s if backend_s and eager_s else None
    result = {
        "variant": variant,
        "backend": backend,
        "input": input_case,
        "outputs": outputs,
        "verdict": verdict,
        "timings": {"backend_s": plain_float(backend_s), "eager_s": plain_float(eager_s),
                    "speedup": plain_float(speedup)},
    }
    if break_ is not None:
        result["break"] = break_
    return result


def make_break(layer: int, block: str, fixed_by_fp32: bool | None = None, flag: str | None = None) -> dict:
    """Where an output first leaves tolerance, and whether keeping that block in FP32 fixes it."""
    return {"layer": int(layer), "block": block, "fixed_by_fp32": fixed_by_fp32, "flag": flag}


def bench_result(variant: dict, backend: str, batch: int, seq: int, samples_s: Sequence[float], *,
                 speedup_vs_torch: float | None = None, speedup_ci95: tuple[float, float] | None = None,
                 peak_mb: float | None = None, threads: int | None = None) -> dict:
    """One benchmark point from per-call latencies in seconds; throughput is batch / p50.

    ``speedup_ci95`` is the 95% confidence interval of ``speedup_vs_torch`` (``timing.speedup_interval``).
    """
    if not samples_s:
        raise ValueError("a benchmark result needs at least one latency sample")
    latency_ms = {f"p{q}": plain_float(percentile(list(samples_s), q) * 1e3) for q in (50, 90, 99)}
    result = {
        "variant": variant,
        "backend": backend,
        "batch": int(batch),
        "seq": int(seq),
        "latency_ms": latency_ms,
        "throughput_seq_per_s": plain_float(batch / (latency_ms["p50"] / 1e3)) if latency_ms["p50"] else None,
        "speedup_vs_torch": plain_float(speedup_vs_torch),
        "speedup_vs_torch_ci95": [plain_float(v) for v in speedup_ci95] if speedup_ci95 is not None else None,
        "threads": threads,
    }
    if peak_mb is not None:
        result["peak_mb"] = plain_float(peak_mb)
    return result


# ----------------------------------------------------------------------------- reports

def _summary(kind: str, results: list[dict]) -> dict:
    backends = sorted({r["backend"] for r in results})
    variants = len({variant_label(r["variant"]) for r in results})
    if kind == "bench":
        return {"total": len(results), "backends": backends, "variants": variants}
    passed = sum(1 for r in results if r["verdict"]["passed"])
    return {"total": len(results), "passed": passed, "failed": len(results) - passed,
            "all_passed": passed == len(results), "backends": backends, "variants": variants}


def _report(kind: str, results: list[dict], environment: dict | None, created: str | None) -> dict:
    results = list(results)
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment if environment is not None else collect_environment(),
        "kind": kind,
        "results": results,
        "summary": _summary(kind, results),
    }
    check_report(report)
    return report


def validate_report(results: list[dict], *, environment: dict | None = None, created: str | None = None) -> dict:
    return _report("validate", results, environment, created)


def bench_report(results: list[dict], *, environment: dict | None = None, created: str | None = None) -> dict:
    return _report("bench", results, environment, created)


# ----------------------------------------------------------------------------- checker

NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))

# Field -> accepted types, per object. Nested objects are checked by their own entries.
TOP_LEVEL = {"schema_version": str, "tool": dict, "created": str, "environment": dict, "kind": str,
             "results": list, "summary": dict}
ENVIRONMENT = {"python": str, "platform": str, "cpu": dict, "gpu": (str, type(None)), "threads": dict,
               "packages": dict}
VARIANT = {"attention": str, "positional": str, "causal": bool}
VALIDATE_RESULT = {"variant": dict, "backend": str, "input": dict, "outputs": dict, "verdict": dict,
                   "timings": dict}
INPUT = {"batch": int, "seq": int, "name": str}
VERDICT = {"passed": bool, "rule": str, "threshold": OPTIONAL_NUMBER, "measured": OPTIONAL_NUMBER,
           "baseline": OPTIONAL_NUMBER, "reason": str}
TIMINGS = {"backend_s": OPTIONAL_NUMBER, "eager_s": OPTIONAL_NUMBER, "speedup": OPTIONAL_NUMBER}
BREAK = {"layer": int, "block": str, "fixed_by_fp32": (bool, type(None)), "flag": (str, type(None))}
OUTPUT_METRICS = {"shape": list, "dtype": str, "real": dict, "padded": dict}
REGION = {"count": int, "nan": int, "inf": int, "abs": dict, "rel": dict, "cosine": OPTIONAL_NUMBER,
          "passing_tolerance": dict}
STATS = {"max": OPTIONAL_NUMBER, "mean": OPTIONAL_NUMBER, "median": OPTIONAL_NUMBER, "p99": OPTIONAL_NUMBER}
BENCH_RESULT = {"variant": dict, "backend": str, "batch": int, "seq": int, "latency_ms": dict,
                "throughput_seq_per_s": OPTIONAL_NUMBER, "speedup_vs_torch": OPTIONAL_NUMBER,
                "threads": (int, type(None))}
LATENCY = {"p50": NUMBER, "p90": NUMBER, "p99": NUMBER}


def _fields(obj, spec: dict, where: str, problems: list[str]) -> bool:
    """Append a problem per missing or mistyped field; True when ``obj`` is at least a dict."""
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return False
    for key, types in spec.items():
        if key not in obj:
            problems.append(f"{where}.{key}: missing")
        # bool is an int in Python; a count or a number must not be a bool.
        elif not isinstance(obj[key], types) or (isinstance(obj[key], bool) and bool not in _as_tuple(types)):
            problems.append(f"{where}.{key}: expected {_type_names(types)}, got {type(obj[key]).__name__}")
    return True


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in _as_tuple(types))


def _check_validate_result(result: dict, where: str, problems: list[str]) -> None:
    _fields(result["variant"], VARIANT, f"{where}.variant", problems)
    _fields(result["input"], INPUT, f"{where}.input", problems)
    _fields(result["verdict"], VERDICT, f"{where}.verdict", problems)
    _fields(result["timings"], TIMINGS, f"{where}.timings", problems)
    if "break" in result:
        _fields(result["break"], BREAK, f"{where}.break", problems)
    for name, metrics in result["outputs"].items():
        out = f"{where}.outputs.{name}"
        if not _fields(metrics, OUTPUT_METRICS, out, problems):
            continue
        for region in ("real", "padded"):
            if isinstance(metrics.get(region), dict) and _fields(metrics[region], REGION, f"{out}.{region}", problems):
                for stat in ("abs", "rel"):
                    _fields(metrics[region].get(stat), STATS, f"{out}.{region}.{stat}", problems)


def _check_bench_result(result: dict, where: str, problems: list[str]) -> None:
    _fields(result["variant"], VARIANT, f"{where}.variant", problems)
    _fields(result["latency_ms"], LATENCY, f"{where}.latency_ms", problems)
    if "peak_mb" in result and not isinstance(result["peak_mb"], OPTIONAL_NUMBER):
        problems.append(f"{where}.peak_mb: expected number or null")
    interval = result.get("speedup_vs_torch_ci95")  # optional: reports before it lack the field
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                     and all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in interval)):
        problems.append(f"{where}.speedup_vs_torch_ci95: expected [low, high] numbers or null")


def check_report(report: dict) -> None:
    """Raise ``ReportSchemaError`` listing every problem, or return None for a valid report."""
    problems: list[str] = []
    if not _fields(report, TOP_LEVEL, "report", problems):
        raise ReportSchemaError(problems[0])
    if report.get("schema_version") != SCHEMA_VERSION:
        raise ReportSchemaError(
            f"report has schema_version {report.get('schema_version')!r}; this {TOOL_NAME} {__version__} "
            f"reads schema_version {SCHEMA_VERSION!r} (regenerate the report with this version)")
    if report.get("kind") not in KINDS:
        problems.append(f"report.kind: expected one of {', '.join(KINDS)}, got {report.get('kind')!r}")
    _fields(report.get("tool"), {"name": str, "version": str}, "report.tool", problems)
    _fields(report.get("environment"), ENVIRONMENT, "report.environment", problems)
    spec, check = ((BENCH_RESULT, _check_bench_result) if report.get("kind") == "bench"
                   else (VALIDATE_RESULT, _check_validate_result))
    results = report.get("results")
    for i, result in enumerate(results if isinstance(results, list) else []):
        where = f"report.results[{i}]"
        problems_before = len(problems)
        if _fields(result, spec, where, problems) and len(problems) == problems_before:
            check(result, where, problems)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ReportSchemaError(f"report does not follow schema {SCHEMA_VERSION}: {shown}")
