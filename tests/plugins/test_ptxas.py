"""Static resource checks: parsing ``ptxas -v`` reports, the checks on injected faults (spills,
shared memory over the limits), TensorRT's AOT path refusing kernels over 48 KiB, and the
default local-window configurations compiled and checked for sm_80 and sm_90."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # as in the other kernel tests, before Triton is imported

import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from seo_export.errors import MissingDependencyError, UsageError  # noqa: E402
from seo_plugins import ptxas  # noqa: E402
from seo_plugins.launch import AOT_SHARED_LIMIT  # noqa: E402

# Captured from ptxas 13.0 over kernels of `seo-export plugins compile` (before re-tiling: the
# FP32 local kernel with 64 x 32 tiles spilled on sm_80) and over a hand-written kernel with a
# static shared array.
SPILLING_SM80 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'local_window_fwd' for 'sm_80'
ptxas info    : Function properties for local_window_fwd
    232 bytes stack frame, 448 bytes spill stores, 340 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 232 bytes cumulative stack size, 424 bytes cmem[0]
ptxas info    : Compile time = 436.409 ms
"""
CLEAN_SM90A = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'local_window_fwd' for 'sm_90a'
ptxas info    : Function properties for local_window_fwd
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 189 registers, used 1 barriers
ptxas info    : Compile time = 573.549 ms
"""
STATIC_SHARED = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k' for 'sm_80'
ptxas info    : Function properties for k
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 1 barriers, 1024 bytes smem, 360 bytes cmem[0]
ptxas info    : Compile time = 1.895 ms
"""
STATIC_SHARED_PTX = """\
.version 8.0
.target sm_80
.address_size 64
.shared .align 4 .b8 buf[1024];
.visible .entry k(.param .u64 k_param_0)
.maxntid 128, 1, 1
{
    .reg .b32 %r<4>;
    .reg .b64 %rd<3>;
    ld.param.u64 %rd1, [k_param_0];
    mov.u32 %r1, %tid.x;
    shl.b32 %r2, %r1, 2;
    mov.u32 %r3, buf;
    add.s32 %r3, %r3, %r2;
    st.shared.u32 [%r3], %r1;
    bar.sync 0;
    ld.shared.u32 %r1, [%r3+4];
    cvta.to.global.u64 %rd2, %rd1;
    st.global.u32 [%rd2], %r1;
    ret;
}
"""


def ptxas_or_skip() -> str:
    try:
        return ptxas.find_ptxas()
    except MissingDependencyError as exc:
        pytest.skip(f"no ptxas here: {exc}")


# ----------------------------------------------------------------------------- parsing


def test_parse_a_report_with_spills():
    found = ptxas.parse_ptxas_output(SPILLING_SM80, "local_window_fwd")
    assert found == ptxas.Resources(registers=255, spill_stores_bytes=448, spill_loads_bytes=340,
                                    stack_frame_bytes=232, static_shared_bytes=0)
    assert found.spills


def test_parse_a_clean_report_and_static_shared_memory():
    clean = ptxas.parse_ptxas_output(CLEAN_SM90A, "local_window_fwd")
    assert (clean.registers, clean.spills, clean.static_shared_bytes) == (189, False, 0)
    assert ptxas.parse_ptxas_output(STATIC_SHARED, "k").static_shared_bytes == 1024


def test_parse_picks_the_named_entry_of_several():
    both = STATIC_SHARED + SPILLING_SM80
    assert ptxas.parse_ptxas_output(both, "k").registers == 8
    assert ptxas.parse_ptxas_output(both, "local_window_fwd").spill_stores_bytes == 448
    with pytest.raises(ValueError, match="no entry function 'other'"):
        ptxas.parse_ptxas_output(both, "other")


# ----------------------------------------------------------------------------- the checks, on injected faults


def entry(name="local_window_fp32_sm80", arch="sm_80", dynamic=32768, static=0, stores=0, loads=0):
    found = ptxas.Resources(registers=128, spill_stores_bytes=stores, spill_loads_bytes=loads,
                            stack_frame_bytes=stores, static_shared_bytes=static)
    base = {"name": name, "arch": arch, "shared_mem_bytes": dynamic}
    return {**base, "resources": ptxas.resources_entry(base, found)}


def test_clean_kernels_pass():
    assert ptxas.check_kernels([entry(), entry(dynamic=AOT_SHARED_LIMIT, arch="sm_90")]) == []


def test_spills_fail():
    with pytest.raises(UsageError, match=r"1 of 2 kernels fail .* registers spilled to local memory: "
                                         r"bad_sm80 \(448 B stored, 340 B loaded\)$"):
        ptxas.check_kernels([entry(), entry(name="bad_sm80", stores=448, loads=340)])


def test_more_shared_memory_than_the_arch_has_fails_even_with_the_opt_in():
    big = entry(name="huge_sm86", arch="sm_86", dynamic=100 * 1024)
    with pytest.raises(UsageError, match=r"more shared memory than the arch has: huge_sm86 \(102400 B, sm_86 "
                                         r"allows 101376 B\)"):
        ptxas.check_kernels([big], allow_shared_opt_in=True)
    ptxas.check_kernels([entry(name="ok_sm90", arch="sm_90", dynamic=100 * 1024)], allow_shared_opt_in=True)


def test_above_48_kib_needs_the_opt_in_and_names_the_jit_path():
    """The FP32 local kernel needed 49,408 B before re-tiling; static shared memory counts too."""
    over = [entry(name="fp32_sm80", dynamic=49408), entry(name="static_sm80", dynamic=AOT_SHARED_LIMIT, static=16)]
    with pytest.raises(UsageError) as info:
        ptxas.check_kernels(over)
    message = str(info.value)
    assert "\n" not in message and message.startswith("2 of 2 kernels fail the static checks")
    assert "fp32_sm80 (49408 B), static_sm80 (49168 B)" in message
    assert "node attribute aot=0" in message and "--allow-shared-opt-in" in message
    assert ptxas.check_kernels(over, allow_shared_opt_in=True) == ["fp32_sm80", "static_sm80"]
    assert all(e["resources"]["needs_shared_opt_in"] for e in over)


def test_tensorrt_aot_path_refuses_a_kernel_over_48_kib(monkeypatch):
    """aot_impl must not hand TensorRT a kernel its launcher cannot give enough shared memory."""
    from seo_plugins.trt import rules

    class Dim:
        is_fake, is_constant = False, True

        def __init__(self, value):
            self.value = value

        def constant_value(self):
            return self.value

    class Desc:
        def __init__(self, dtype, *dims):
            self.dtype, self.shape_expr = dtype, [Dim(d) for d in dims]

    inputs = [Desc("FLOAT", 1, 2, 128, 64)] * 3 + [Desc("BOOL", 1, 128), Desc("FLOAT", 2, 65)]
    attrs = dict(window_left=64, window_right=64, scale=0.125)
    fake = entry(name="local_window_fp32_d64_w64_64_mask_bias32_sm80", dynamic=49408)
    monkeypatch.setattr(rules, "tensorrt_kernel", lambda config, arch, kernel_dir: ("local_window_fwd", "", fake))
    with pytest.raises(rules.PluginRuleError, match=r"needs 49408 B of shared memory, more than the 49152 B .*"
                                                    r"node attribute aot=0"):
        rules.aot_impl_result(None, rules.LOCAL_WINDOW, inputs, attrs, "sm_80")
    assert ptxas.aot_shared_problem(entry(dynamic=AOT_SHARED_LIMIT)) is None


# ----------------------------------------------------------------------------- ptxas itself


def test_measure_reads_static_shared_memory_from_a_real_ptxas():
    found = ptxas.measure(STATIC_SHARED_PTX, "sm_80", "k", ptxas_or_skip())
    assert found.static_shared_bytes == 1024 and not found.spills and found.registers > 0


def test_ptxas_errors_are_one_line():
    with pytest.raises(UsageError, match=r"^ptxas rejected k for sm_80: .*") as info:
        ptxas.measure(STATIC_SHARED_PTX.replace("ret;", "not_an_instruction;"), "sm_80", "k", ptxas_or_skip())
    assert "\n" not in str(info.value)


def test_a_missing_ptxas_says_so_in_one_line(monkeypatch):
    import triton.backends.nvidia.compiler as nvidia

    monkeypatch.setattr(ptxas.shutil, "which", lambda name: None)
    monkeypatch.setattr(nvidia, "get_ptxas", lambda *args: (_ for _ in ()).throw(RuntimeError("none bundled")))
    with pytest.raises(MissingDependencyError, match=r"ptxas .* is not on PATH.*pass --no-ptxas$"):
        ptxas.find_ptxas()



def test_without_ptxas_on_path_tritons_own_is_found(monkeypatch, tmp_path):
    """Triton 3.4 and later take the arch in get_ptxas(arch): the H200 machine has Triton but maybe no CUDA toolkit."""
    import types

    import triton.backends.nvidia.compiler as nvidia

    bundled = tmp_path / "ptxas"
    bundled.write_text("")
    monkeypatch.setattr(ptxas.shutil, "which", lambda name: None)
    monkeypatch.setattr(nvidia, "get_ptxas", lambda arch: types.SimpleNamespace(path=str(bundled)))
    assert ptxas.find_ptxas() == str(bundled)


# ----------------------------------------------------------------------------- the default configurations


COMPILE = """
import json, sys
from seo_plugins.aot import KernelConfig, compile_kernels
configs = [KernelConfig(**c) for c in json.loads(sys.argv[2])]
compile_kernels(configs, archs=("sm_80", "sm_90"), out_dir=sys.argv[1])
"""


def test_default_local_window_configurations_pass_the_static_checks(tmp_path):
    """FP16 and FP32, with and without a relative bias, for sm_80 and sm_90: compiled, assembled and
    checked by compile_kernels itself (it raises on a spill or more than 48 KiB of shared memory).
    A subset of the defaults, to keep CI quick; scripts/results/ptxas_resources.md has them all."""
    from seo_plugins.aot import default_configs, load_manifest

    ptxas_or_skip()
    configs = [c for c in default_configs() if c.op == "local_window"
               and (c.window_left, c.max_distance) in ((127, 0), (64, 32))]
    assert {c.dtype for c in configs} == {"fp16", "fp32"} and len(configs) == 4
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE, str(tmp_path),
                             json.dumps([dataclasses.asdict(c) for c in configs])],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    kernels = load_manifest(tmp_path)["kernels"]
    assert len(kernels) == 8
    for kernel in kernels:
        record = kernel["resources"]
        assert record["dynamic_shared_bytes"] + record["static_shared_bytes"] <= AOT_SHARED_LIMIT, kernel["name"]
        assert record["spill_stores_bytes"] == record["spill_loads_bytes"] == 0, kernel["name"]


# ----------------------------------------------------------------------------- the JIT path's landmark kernels


JIT_LANDMARK = """
import dataclasses, json, re, sys
from concurrent.futures import ThreadPoolExecutor
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from seo_plugins import ptxas
from seo_plugins.aot import DEFAULT_PTX_VERSION, ELEMENT_BYTES, POINTER_ALIGNMENT, parse_arch
from seo_plugins.kernels.landmark import stage_kernels, stage_signature
from seo_plugins.launch import landmark_stages_launch

seq, head_dim, landmarks, iterations, bias_k = 16384, 64, 64, 6, 32
tool = ptxas.find_ptxas()
jobs = []
for dtype in json.loads(sys.argv[1]):
    tiles = landmark_stages_launch(head_dim, landmarks, ELEMENT_BYTES[dtype])
    stages = stage_kernels(tiles, seq, head_dim, landmarks, iterations, bias_k, head_dim ** -0.5, has_mask=True,
                           has_bias=True)
    for stage, (kernel, constexprs, options) in stages.items():
        signature = {name: "constexpr" for name in kernel.arg_names}
        signature.update(stage_signature(kernel, dtype))
        attrs = {(kernel.arg_names.index(name),): [["tt.divisibility", POINTER_ALIGNMENT]]
                 for name, kind in signature.items() if kind.startswith("*")}
        for arch in json.loads(sys.argv[2]):
            compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs),
                                      target=GPUTarget("cuda", parse_arch(arch), 32),
                                      options={**options, "ptx_version": DEFAULT_PTX_VERSION})
            ptx = compiled.asm["ptx"]
            target = re.search(r"^\\.target\\s+(\\S+)", ptx, re.M).group(1)
            jobs.append((f"{stage}_{dtype}_{arch}", ptx, target, compiled.metadata.name, compiled.metadata.shared))


def measure(job):
    name, ptx, target, entry, shared = job
    return {"name": name, "dynamic_shared_bytes": shared, **dataclasses.asdict(ptxas.measure(ptx, target, entry, tool))}


with ThreadPoolExecutor(4) as pool:  # ptxas runs as a process: threads overlap them
    print(json.dumps(list(pool.map(measure, jobs))))
"""


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
def test_jit_landmark_kernels_do_not_spill_at_the_zoo_default(dtype):
    """The JIT path's four landmark kernels (means, keys, pinv, queries) at the zoo's 64 landmarks, head dim 64,
    with mask and bias, for sm_80 and sm_90, assembled by ptxas: no spills. Before the pinv kernel staged its
    L x L products through scratch (``landmark_parts.staged_dot``) it spilled 544 B (64 KiB of shared memory);
    FP32 queries in 32-row blocks spilled 84 B and BF16 keys in 64-key steps 8 B on sm_80. JIT kernels may use
    more than 48 KiB of shared memory (Triton's launcher opts in), so only the arch's own limit applies. PTX ISA
    8.0 as ``plugins compile`` writes it, so any ptxas from CUDA 12.0 on assembles it."""
    ptxas_or_skip()
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", JIT_LANDMARK, json.dumps([dtype]), json.dumps(["sm_80", "sm_90"])],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    kernels = json.loads(result.stdout.strip().splitlines()[-1])
    stages, archs = ("means", "keys", "pinv", "queries"), ("sm_80", "sm_90")
    assert sorted(k["name"] for k in kernels) == sorted(f"{s}_{dtype}_{a}" for s in stages for a in archs)
    spilled = {k["name"]: (k["spill_stores_bytes"], k["spill_loads_bytes"]) for k in kernels
               if k["spill_stores_bytes"] or k["spill_loads_bytes"]}
    assert not spilled, f"spill stores / loads (B): {spilled}"
    for kernel in kernels:
        arch = int(kernel["name"].rsplit("_sm_", 1)[1])
        shared = kernel["dynamic_shared_bytes"] + kernel["static_shared_bytes"]
        assert shared <= ptxas.MAX_SHARED_PER_BLOCK[arch], kernel
