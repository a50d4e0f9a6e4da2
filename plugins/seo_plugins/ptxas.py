"""Static resource checks of the AOT kernels: ``ptxas -v`` over each PTX, no GPU needed.

``parse_ptxas_output`` reads the report of ``ptxas -v`` (registers, spills, static shared
memory); ``measure`` assembles one PTX for its target and parses the report; ``check_kernels``
refuses manifest entries that spill or need more shared memory than their arch has, and
those above the 48 KiB a launch gets without opting in (TensorRT's AOT launcher does not
opt in). Triton's dynamic shared memory comes from its metadata, not from ptxas.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from seo_plugins.errors import MissingDependencyError, UsageError
from seo_plugins.launch import AOT_SHARED_LIMIT

# Shared memory one block may use after opting in, static plus dynamic, per compute capability
# (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability").
MAX_SHARED_PER_BLOCK = {80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024, 89: 99 * 1024, 90: 227 * 1024,
                        100: 227 * 1024, 103: 227 * 1024, 120: 99 * 1024, 121: 99 * 1024}
# Archs missing from the table get the smallest figure in it: a check that errs on the safe side.
UNKNOWN_ARCH_SHARED = min(MAX_SHARED_PER_BLOCK.values())
JIT_HINT = "run such nodes with the JIT plugin (node attribute aot=0), whose Triton launcher opts in"


@dataclass(frozen=True)
class Resources:
    """What ``ptxas -v`` reports for one entry function (sizes in bytes)."""

    registers: int
    spill_stores_bytes: int
    spill_loads_bytes: int
    stack_frame_bytes: int
    static_shared_bytes: int

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores_bytes or self.spill_loads_bytes)


def parse_ptxas_output(text: str, kernel: str) -> Resources:
    """The resources of entry ``kernel`` in the report of ``ptxas -v``; ValueError when absent."""
    start = re.search(rf"Compiling entry function '{re.escape(kernel)}'", text)
    if not start:
        raise ValueError(f"ptxas reported no entry function {kernel!r}")
    section = re.split(r"Compiling entry function '", text[start.end():])[0]
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", section)
    used = re.search(r"Used (\d+) registers[^\n]*", section)
    if not frame or not used:
        raise ValueError(f"ptxas reported no registers or spills for {kernel!r}")
    smem = re.search(r"(\d+) bytes smem", used.group(0))
    return Resources(registers=int(used.group(1)), spill_stores_bytes=int(frame.group(2)),
                     spill_loads_bytes=int(frame.group(3)), stack_frame_bytes=int(frame.group(1)),
                     static_shared_bytes=int(smem.group(1)) if smem else 0)


def find_ptxas() -> str:
    """ptxas on PATH (beside nvcc), else the one Triton ships; MissingDependencyError when neither is."""
    path = shutil.which("ptxas")
    if path is None:
        try:
            from triton.backends.nvidia.compiler import get_ptxas

            try:
                tool = get_ptxas(80)  # Triton 3.4 and later take the arch (>= 90 gets its newer ptxas)
            except TypeError:
                tool = get_ptxas()
            path = tool.path
        except Exception:  # no Triton, or a Triton without a bundled ptxas
            path = None
    if path is None or not Path(path).is_file():
        raise MissingDependencyError("ptxas (CUDA's assembler) is not on PATH, so the kernels' registers, spills "
                                     "and shared memory cannot be checked; install the CUDA toolkit or pass --no-ptxas")
    return path


def ptxas_version(ptxas: str) -> str:
    """``13.0.88`` from ``ptxas --version`` (the whole last line when it has no V number)."""
    text = subprocess.run([ptxas, "--version"], capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"\bV(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else text.strip().splitlines()[-1]


def measure(ptx: str, target: str, kernel: str, ptxas: str) -> Resources:
    """Assemble ``ptx`` for ``target`` (the PTX's own ``.target``, e.g. sm_90a) and parse the report."""
    with tempfile.TemporaryDirectory(prefix="seo_ptxas_") as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        command = [ptxas, "-v", f"--gpu-name={target}", str(source), "-o", str(source.with_suffix(".cubin"))]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    if result.returncode != 0:
        first = next((line for line in report.splitlines() if "error" in line or "fatal" in line), report.strip())
        raise UsageError(f"ptxas rejected {kernel} for {target}: {first.strip()}")
    return parse_ptxas_output(report, kernel)


def resources_entry(entry: dict, resources: Resources | None) -> dict:
    """The manifest's ``resources`` record of ``entry``: ptxas's figures (when it ran), the dynamic
    shared memory the launch needs (Triton's metadata) and whether that needs the opt-in."""
    record = {**(asdict(resources) if resources else {}), "dynamic_shared_bytes": entry["shared_mem_bytes"]}
    record["needs_shared_opt_in"] = shared_bytes({**entry, "resources": record}) > AOT_SHARED_LIMIT
    return record


def shared_bytes(entry: dict) -> int:
    """Static plus dynamic shared memory of a manifest entry (static 0 where ptxas did not run)."""
    return entry["shared_mem_bytes"] + entry.get("resources", {}).get("static_shared_bytes", 0)


def aot_shared_problem(entry: dict) -> str | None:
    """Why TensorRT's AOT launcher cannot launch ``entry`` (shared memory above 48 KiB), or None."""
    need = shared_bytes(entry)
    if need <= AOT_SHARED_LIMIT:
        return None
    return (f"{entry['name']} needs {need} B of shared memory, more than the {AOT_SHARED_LIMIT} B a launch gets "
            f"without opting in, which TensorRT's AOT launcher does not do; {JIT_HINT}")


def _arch_limit(arch: str) -> int:
    """The opt-in shared memory limit of a manifest arch (``sm_90``)."""
    return MAX_SHARED_PER_BLOCK.get(int(arch.removeprefix("sm_")), UNKNOWN_ARCH_SHARED)


def check_kernels(entries: list[dict], allow_shared_opt_in: bool = False) -> list[str]:
    """Names of the entries that need the shared-memory opt-in (allowed only with ``allow_shared_opt_in``).

    UsageError, one line, when any entry spills (ptxas ran), needs more shared memory than its
    arch allows, or needs the opt-in without ``allow_shared_opt_in``.
    """
    over, spills, opt_in = [], [], []
    for entry in entries:
        name, need, limit = entry["name"], shared_bytes(entry), _arch_limit(entry["arch"])
        record = entry.get("resources", {})
        if record.get("spill_stores_bytes") or record.get("spill_loads_bytes"):
            spills.append((name, f"{record['spill_stores_bytes']} B stored, {record['spill_loads_bytes']} B loaded"))
        if need > limit:
            over.append((name, f"{need} B, {entry['arch']} allows {limit} B"))
        elif need > AOT_SHARED_LIMIT:
            opt_in.append((name, f"{need} B"))
    problems = {"more shared memory than the arch has": over, "registers spilled to local memory": spills}
    if not allow_shared_opt_in:
        problems[f"more than {AOT_SHARED_LIMIT} B of shared memory, which needs the launcher to opt in "
                 f"(TensorRT's AOT launcher does not; {JIT_HINT}, or pass --allow-shared-opt-in for a "
                 f"launcher that does)"] = opt_in
    failing = {name for found in problems.values() for name, _ in found}
    if failing:
        listed = "; ".join(f"{what}: {', '.join(f'{name} ({why})' for name, why in found)}"
                           for what, found in problems.items() if found)
        raise UsageError(f"{len(failing)} of {len(entries)} kernels fail the static checks: {listed}")
    return [name for name, _ in opt_in]
