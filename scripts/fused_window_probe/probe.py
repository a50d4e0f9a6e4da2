"""A fused local-window kernel (local_window.c) beside the portable ONNX body, against the matmul peak.

Issue 14 has to choose between the portable body (~22% of the float32 matmul peak at S = 8192) and a
fused, non-portable kernel. This probe measures the second instead of estimating it. The C kernel
runs each 64-row query block's two GEMMs through numpy's own OpenBLAS (the BLAS behind numpy's
matmul, one of the peak's contenders) on the keys and values in place, with the band softmax done
while the tile is in cache. It is compiled here with gcc and OpenMP.

Timed interleaved and warm, as ``seo_export.bench.attention_body`` times: the body on ONNX Runtime,
the kernel, the kernel's GEMMs alone (no softmax, so a wrong output: timing only) and the matmul
peak. The kernel must match the body within 1e-4, or nothing is reported.

Run: python scripts/fused_window_probe/probe.py [--seq 8192] [--rounds 15] [--out scripts/results]
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("local_window.c")
AGREEMENT = 1e-4
_SGEMM = ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "scipy_cblas_sgemm", "cblas_sgemm")
_SET_THREADS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads", "openblas_set_num_threads")


def numpy_openblas() -> tuple[str, str, str]:
    """(library path, its sgemm symbol, its set-threads symbol): the OpenBLAS numpy ships with."""
    root = Path(np.__file__).parent
    for path in sorted(glob.glob(str(root.parent / "numpy.libs" / "*openblas*.so*"))
                       + glob.glob(str(root / ".libs" / "*openblas*.so*"))):
        lib = ctypes.CDLL(path)
        sgemm = next((s for s in _SGEMM if hasattr(lib, s)), None)
        threads = next((s for s in _SET_THREADS if hasattr(lib, s)), None)
        if sgemm and threads:
            return path, sgemm, threads
    raise SystemExit(f"no OpenBLAS with cblas_sgemm beside numpy {np.__version__} ({root}): this probe links "
                     "numpy's own BLAS; install numpy from a PyPI wheel")


def build(workdir: Path, blas: str, sgemm: str, extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL:
    """The kernel compiled (gcc, OpenMP, -O3 -march=native) against ``blas``, loaded."""
    out = workdir / ("liblocal_window" + "".join(f"_{flag[2:].lower()}" for flag in extra_flags) + ".so")
    blasint = "long long" if sgemm.endswith("64_") else "int"
    command = ["gcc", "-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-shared", f"-DSGEMM={sgemm}",
               f"-DBLASINT={blasint}", *extra_flags, str(SOURCE), "-o", str(out), blas,
               f"-Wl,-rpath,{Path(blas).parent}", "-lm"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("gcc not found: this probe compiles local_window.c; install gcc") from None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"compiling {SOURCE.name} failed: {exc.stderr.strip().splitlines()[-1]}") from None
    lib = ctypes.CDLL(str(out))
    pointer = ctypes.POINTER(ctypes.c_float)
    lib.local_window.argtypes = [pointer] * 4 + [ctypes.c_int] * 5 + [ctypes.c_float]
    lib.local_window.restype = ctypes.c_int
    return lib


def kernel_call(lib, set_threads, q, k, v, out, window_left: int, window_right: int, threads: int):
    """The kernel as one call: OpenBLAS single-threaded inside (OpenMP splits the blocks), restored after
    for numpy's own matmul, a contender of the peak."""
    batch, heads, seq, dim = q.shape
    pointers = [a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) for a in (q, k, v, out)]

    def call():
        set_threads(1)
        status = lib.local_window(*pointers, batch * heads, seq, dim, window_left, window_right, dim ** -0.5)
        set_threads(threads)
        if status:
            raise MemoryError("the fused kernel could not allocate its tile")
        return out

    return call


def measure(seqs: list[int], heads: int = 2, head_dim: int = 64, window: int = 128, rounds: int = 15,
            threads: int | None = None, fault: bool = False) -> dict:
    threads = threads or os.cpu_count() or 1
    # Before libgomp loads: idle OpenMP threads sleep instead of spinning into the next contender.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from seo_export.bench.attention_body import REGIMES, node_model, peak_fractions
    from seo_export.bench.export_scaling import MATMUL_SIZES, band_pairs, matmul_contenders, ort_session
    from seo_export.utils.environment import cpu_model, load_average, package_version
    from seo_export.utils.timing import interleaved_times, median, speedup

    left = right = window // 2
    blas, sgemm, set_threads_name = numpy_openblas()
    set_threads = getattr(ctypes.CDLL(blas), set_threads_name)
    set_threads.argtypes = [ctypes.c_int]
    rng = np.random.default_rng(0)
    body = ort_session(node_model(head_dim, left, right, False), threads)
    matmuls, matmul_flops, matmul_settle = matmul_contenders(MATMUL_SIZES, threads, rng)
    load_start, rows = load_average(), []
    with tempfile.TemporaryDirectory(prefix="seo-fused-probe-") as tmp:
        kernel = build(Path(tmp), blas, sgemm, ("-DFAULT_WIDE_WINDOW",) if fault else ())
        gemms = build(Path(tmp), blas, sgemm, ("-DGEMMS_ONLY",))
        for seq in seqs:
            q, k, v = (rng.standard_normal((1, heads, seq, head_dim), dtype=np.float32) for _ in range(3))
            feeds = {"q": q, "k": k, "v": v}
            expected = body.run(None, feeds)[0]
            fused = kernel_call(kernel, set_threads, q, k, v, np.empty_like(q), left, right, threads)
            agreement = float(np.abs(fused() - expected).max())
            if not agreement <= AGREEMENT:
                raise SystemExit(f"the fused kernel differs from the body by {agreement:.2e} at S = {seq} "
                                 f"(> {AGREEMENT:g}): no timing is reported for a wrong kernel")
            contenders = {"body": lambda: body.run(None, feeds), "fused": fused,
                          "fused GEMMs only": kernel_call(gemms, set_threads, q, k, v, np.empty_like(q), left, right,
                                                          threads), **matmuls}
            samples = interleaved_times(contenders, rounds=rounds, warmup=1, settle_after=matmul_settle,
                                        **REGIMES["warm"])
            names = ("body", "fused", "fused GEMMs only")
            peak, fractions = peak_fractions(samples, matmul_flops, 4 * heads * head_dim * band_pairs(seq, left, right),
                                             names)
            rows.append({
                "seq": seq, "max_abs_fused_vs_body": agreement, "peak_flop_per_s": peak,
                "median_s": {name: median(samples[name]) for name in names}, "samples_s": samples,
                "fraction_of_peak": fractions, "fused_speedup_vs_body": speedup(samples["body"], samples["fused"]),
            })
    return {
        "benchmark": "fused_window_probe",
        "command": shlex.join(["python", "scripts/fused_window_probe/probe.py", *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
                    "load_average_1min": {"start": load_start, "end": load_average()},
                    "python": platform.python_version(), "onnxruntime": package_version("onnxruntime"),
                    "numpy": np.__version__, "blas": Path(blas).name},
        "shape": {"batch": 1, "heads": heads, "head_dim": head_dim, "window_left": left, "window_right": right,
                  "key_mask": False, "matmul_sizes": list(MATMUL_SIZES)},
        "rounds": rounds, "timing": REGIMES["warm"], "rows": rows,
    }


def to_markdown(result: dict) -> str:
    from seo_export.bench.attention_body import speedup_text

    m, shape = result["machine"], result["shape"]
    lines = ["# A fused local-window kernel against the portable body (issue 14's decision)", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {m['cpu']} x {m['cores']}, {m['threads']} threads (ONNX Runtime intra-op, OpenMP), load "
             f"average {m['load_average_1min']['start']} -> {m['load_average_1min']['end']}; onnxruntime "
             f"{m['onnxruntime']}, numpy {m['numpy']} ({m['blas']}).", "",
             f"q, k, v [1, {shape['heads']}, S, {shape['head_dim']}], window {shape['window_left']} / "
             f"{shape['window_right']}, no key mask; {result['rounds']} interleaved rounds, each sample warm (1 "
             "untimed call, then the mean of 4), as `seo_export.bench.attention_body`. Peak: per round, the fastest "
             f"of ONNX Runtime's and numpy's float32 matmul at n = {', '.join(map(str, shape['matmul_sizes']))}. "
             "`fused`: `scripts/fused_window_probe/local_window.c`, two OpenBLAS sgemm calls per 64-row query "
             "block on the keys and values in place, the band softmax in cache; `fused GEMMs only`: the same "
             "without the softmax (wrong output, timing only).", "",
             "| S | contender | median ms | % of peak (p10-p90) |", "|---|---|---|---|"]
    for r in result["rows"]:
        for name, f in r["fraction_of_peak"].items():
            lines.append(f"| {r['seq']} | {name} | {r['median_s'][name] * 1e3:.2f} | {f['median']:.1%} "
                         f"({f['p10']:.1%}-{f['p90']:.1%}) |")
        lines.append(f"| {r['seq']} | matmul peak | | {r['peak_flop_per_s'] / 1e9:.0f} GFLOP/s |")
    lines.append("")
    for r in result["rows"]:
        lines.append(f"- S = {r['seq']}: the fused kernel is {speedup_text(r['fused_speedup_vs_body'])}"
                     f" the body's speed, at {r['fraction_of_peak']['fused']['median']:.1%} of the peak against "
                     f"{r['fraction_of_peak']['body']['median']:.1%}; outputs within "
                     f"{r['max_abs_fused_vs_body']:.1e}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from seo_export.bench.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", default="8192", help="comma-separated sequence lengths (default 8192)")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="scripts/results")
    parser.add_argument("--name", default="fused_window_probe", help="results file stem")
    parser.add_argument("--fault", action="store_true", help=argparse.SUPPRESS)  # the agreement check's own test
    args = parser.parse_args(argv)
    result = measure([int(s) for s in args.seq.split(",")], heads=args.heads, rounds=args.rounds,
                     threads=args.threads, fault=args.fault)
    write_results(args.out, args.name, result, to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
