"""The report document (schema_version "1", see SCHEMA.md): builders and a checker.

Reports are plain dicts of JSON types, so the same object feeds ``json.dumps``, the markdown
table and the HTML page; builders check what they build so a bad field fails where it is made.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from seo_export import __version__
from seo_export.errors import UsageError
from seo_export.export.internals import describe_module
from seo_export.parity.metrics import plain_float
from seo_export.utils.environment import collect_environment
from seo_export.utils.timing import percentile

SCHEMA_VERSION = "1"
TOOL_NAME = "seo-export"
KINDS = ("validate", "bench")
#: What a validate result tests: ``export``, a backend's output against eager zoo PyTorch (the default,
#: when ``check`` is absent); ``conversion``, eager zoo PyTorch against the transformers model it was
#: converted from (``validate --hf``, backend ``transformers``).
CHECKS = ("export", "conversion")


class ReportSchemaError(UsageError):
    """A report that does not follow the schema (or follows another version of it)."""


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
                    backend_s: float | None = None, eager_s: float | None = None, eager_precision: str = "fp32",
                    break_: dict | None = None, check: str | None = None) -> dict:
    """One variant x backend x input case. ``verdict`` is a ``tolerance.Verdict`` or its dict;
    ``input_case`` is ``make_input(...)``; ``outputs`` maps output names to ``metrics.compare`` dicts;
    ``eager_s`` was timed in ``eager_precision`` (the graph's own, so speedups compare like with like).
    ``check`` is what the result tests (``CHECKS``): ``conversion`` for eager zoo PyTorch against the
    transformers model (``validate --hf``); absent for the export (a backend against eager zoo PyTorch)."""
    if check is not None and check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")
    verdict = verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)
    speedup = eager_s / backend_s if backend_s and eager_s else None
    result = {
        "variant": variant,
        "backend": backend,
        "input": input_case,
        "outputs": outputs,
        "verdict": verdict,
        "timings": {"backend_s": plain_float(backend_s), "eager_s": plain_float(eager_s),
                    "speedup": plain_float(speedup), "eager_precision": eager_precision},
    }
    if break_ is not None:
        result["break"] = break_
    if check is not None and check != "export":
        result["check"] = check
    return result


def result_check(result: dict) -> str:
    """What a validate result tests: ``export`` (the default) or ``conversion``."""
    return result.get("check", "export")


def make_break(module: str, fixed_by_fp32: bool | None = None, flag: str | None = None,
               note: str | None = None) -> dict:
    """Where an output first leaves tolerance (the module, as ``--keep-fp32`` names it), whether
    keeping that module in FP32 fixes it, and ``note``: why that was not tried, when it was not."""
    layer, block = describe_module(module)
    return {"module": module, "layer": layer, "block": block, "fixed_by_fp32": fixed_by_fp32, "flag": flag,
            "note": note}


def bench_result(variant: dict, backend: str, batch: int, seq: int, samples_s: Sequence[float], *,
                 speedup_vs_torch: float | None = None, speedup_ci95: tuple[float, float] | None = None,
                 speedup_vs_torch_fp16: float | None = None, speedup_fp16_ci95: tuple[float, float] | None = None,
                 precision: str | None = None, peak_mb: float | None = None, threads: int | None = None,
                 accuracy: dict | None = None) -> dict:
    """One benchmark point from per-call latencies in seconds; throughput is batch / p50.

    ``speedup_ci95`` is the 95% confidence interval of ``speedup_vs_torch`` (``timing.speedup_interval``);
    ``speedup_vs_torch_fp16`` and ``speedup_fp16_ci95`` the same against eager FP16, where it was timed.
    ``accuracy``: the INT8 rule's figures against eager FP32 on the timed inputs (``ort-int8`` only).
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
        "speedup_vs_torch_ci95": _interval(speedup_ci95),
        "threads": threads,
    }
    if speedup_vs_torch_fp16 is not None:
        result["speedup_vs_torch_fp16"] = plain_float(speedup_vs_torch_fp16)
        result["speedup_vs_torch_fp16_ci95"] = _interval(speedup_fp16_ci95)
    if precision is not None:
        result["precision"] = precision
    if peak_mb is not None:
        result["peak_mb"] = plain_float(peak_mb)
    if accuracy is not None:
        result["accuracy"] = accuracy
    return result


def _interval(interval: tuple[float, float] | None) -> list[float] | None:
    return [plain_float(v) for v in interval] if interval is not None else None


def headline_speedup(result: dict) -> tuple[float | None, list[float] | None]:
    """(speedup, 95% interval) a bench point is summed up by: against eager PyTorch at the backend's
    precision, so an FP16 backend is not credited with the FP16/FP32 gap; eager FP32 otherwise."""
    if result.get("precision") == "fp16" and result.get("speedup_vs_torch_fp16") is not None:
        return result["speedup_vs_torch_fp16"], result.get("speedup_vs_torch_fp16_ci95")
    return result["speedup_vs_torch"], result.get("speedup_vs_torch_ci95")


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
BREAK = {"module": str, "layer": (int, type(None)), "block": str, "fixed_by_fp32": (bool, type(None)),
         "flag": (str, type(None)), "note": (str, type(None))}
OUTPUT_METRICS = {"shape": list, "dtype": str, "real": dict, "padded": dict}
REGION = {"count": int, "nan": int, "inf": int, "abs": dict, "rel": dict, "cosine": OPTIONAL_NUMBER,
          "passing_tolerance": dict}
STATS = {"max": OPTIONAL_NUMBER, "mean": OPTIONAL_NUMBER, "median": OPTIONAL_NUMBER, "p99": OPTIONAL_NUMBER}
BENCH_RESULT = {"variant": dict, "backend": str, "batch": int, "seq": int, "latency_ms": dict,
                "throughput_seq_per_s": OPTIONAL_NUMBER, "speedup_vs_torch": OPTIONAL_NUMBER,
                "threads": (int, type(None))}
LATENCY = {"p50": NUMBER, "p90": NUMBER, "p99": NUMBER}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


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
    if result.get("check", "export") not in CHECKS:
        problems.append(f"{where}.check: expected one of {', '.join(CHECKS)}, got {result.get('check')!r}")
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
    # Optional fields: reports from before them lack them.
    if not isinstance(result.get("speedup_vs_torch_fp16"), OPTIONAL_NUMBER):
        problems.append(f"{where}.speedup_vs_torch_fp16: expected number or null")
    if result.get("precision") not in (None, *PRECISIONS):
        problems.append(f"{where}.precision: expected one of {', '.join(PRECISIONS)}")
    if not isinstance(result.get("accuracy"), (dict, type(None))):
        problems.append(f"{where}.accuracy: expected an object or null")
    for field in ("speedup_vs_torch_ci95", "speedup_vs_torch_fp16_ci95"):
        interval = result.get(field)
        if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                         and all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in interval)):
            problems.append(f"{where}.{field}: expected [low, high] numbers or null")


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
