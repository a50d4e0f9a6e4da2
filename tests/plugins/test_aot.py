"""AOT compilation to PTX for a named CUDA target, with no GPU present.

Compilation runs in a subprocess without TRITON_INTERPRET: the other kernel tests load
the kernels in the interpreter, and an interpreted kernel cannot be compiled.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # as in the other kernel tests, before Triton is imported

import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("triton")

from seo_export.errors import MissingDependencyError, UsageError  # noqa: E402
from seo_plugins.aot import (  # noqa: E402
    MANIFEST_NAME,
    KernelConfig,
    compile_kernel,
    default_configs,
    drop_unused_scratch_params,
    load_manifest,
    parse_arch,
    ptx_entry_params,
)
from seo_plugins.launch import eval_shape_expr  # noqa: E402

SMALL = KernelConfig("local_window", dtype="fp16", head_dim=8, window_left=3, window_right=0, has_mask=True,
                     has_bias=True, max_distance=2)

COMPILE = """
import json, sys
from seo_plugins.aot import KernelConfig, compile_kernels
config = KernelConfig(**json.loads(sys.argv[1]))
compile_kernels([config], archs=("sm_80",), out_dir=sys.argv[2], run_ptxas=sys.argv[3] == "1")
"""


def have_ptxas() -> bool:
    from seo_plugins.ptxas import find_ptxas

    try:
        find_ptxas()
    except MissingDependencyError:
        return False
    return True


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ptx")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE, json.dumps(dataclasses.asdict(SMALL)), str(out),
                             str(int(have_ptxas()))], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_manifest_names_the_ptx_entry_and_hashes_match(compiled):
    manifest = load_manifest(compiled)  # checks every sha256
    (entry,) = manifest["kernels"]
    ptx = (compiled / entry["ptx"]).read_text()
    assert entry["ptx"] == f"{entry['name']}.ptx" and entry["name"] == f"{SMALL.name}_sm80"
    assert re.search(rf"\.entry\s+{entry['kernel']}\s*\(", ptx)
    assert entry["sha256"] == hashlib.sha256(ptx.encode()).hexdigest()
    assert re.search(r"^\.target\s+sm_80\b", ptx, re.M) and entry["arch"] == "sm_80"
    assert sorted(p.name for p in compiled.iterdir()) == sorted([entry["ptx"], MANIFEST_NAME]), "no temp files left"


def test_manifest_describes_the_launch(compiled):
    (entry,) = load_manifest(compiled)["kernels"]
    ptx = (compiled / entry["ptx"]).read_text()
    names = [a["name"] for a in entry["args"]]
    assert names[:8] == ["q", "k", "v", "key_padding_mask", "rel_bias", "num_heads", "seq_len", "out"]
    assert all(a["role"] == "scratch" for a in entry["args"][8:])
    assert [a["ptx_param"] for a in entry["args"]] == ptx_entry_params(ptx, entry["kernel"])
    assert entry["block"] == [entry["num_warps"] * 32, 1, 1] and entry["shared_mem_bytes"] >= 0
    assert entry["constexprs"]["WINDOW_LEFT"] == 3 and entry["constexprs"]["SCALE"] == pytest.approx(8 ** -0.5)
    grid = [eval_shape_expr(e, dict(B=2, H=3, S=37)) for e in entry["grid"]["expr"]]
    assert grid == [-(-37 // entry["grid"]["launch"]["block_m"]), 6, 1]


def test_manifest_records_the_static_checks(compiled):
    manifest = load_manifest(compiled)
    (entry,) = manifest["kernels"]
    record = entry["resources"]
    assert record["dynamic_shared_bytes"] == entry["shared_mem_bytes"] and not record["needs_shared_opt_in"]
    if not have_ptxas():
        assert "--no-ptxas" in manifest["ptxas"]["skipped"]
        pytest.skip("no ptxas here: the manifest says the checks were skipped")
    assert re.fullmatch(r"\d+(\.\d+)+", manifest["ptxas"]["version"])
    assert 0 < record["registers"] <= 255 and record["static_shared_bytes"] == 0
    assert record["spill_stores_bytes"] == record["spill_loads_bytes"] == 0


def test_a_changed_or_missing_file_is_refused(compiled, tmp_path):
    (entry,) = load_manifest(compiled)["kernels"]
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / MANIFEST_NAME).write_text((compiled / MANIFEST_NAME).read_text())
    with pytest.raises(UsageError, match="no readable kernel manifest"):
        load_manifest(copy)
    (copy / entry["ptx"]).write_text((compiled / entry["ptx"]).read_text() + "// edited\n")
    with pytest.raises(UsageError, match="does not match its manifest hash"):
        load_manifest(copy)


def test_unused_scratch_params_can_be_dropped(compiled):
    """TensorRT passes only the kernel's own arguments; the stripped PTX must still assemble."""
    from triton.backends.nvidia.compiler import get_ptxas

    (entry,) = load_manifest(compiled)["kernels"]
    ptx = drop_unused_scratch_params((compiled / entry["ptx"]).read_text(), entry)
    own = [a for a in entry["args"] if a["role"] != "scratch"]
    assert ptx_entry_params(ptx, entry["kernel"]) == [a["ptx_param"] for a in own]
    (compiled / "stripped.ptx").write_text(ptx)
    result = subprocess.run([get_ptxas(80).path, "--gpu-name=sm_80", str(compiled / "stripped.ptx"),
                             "-o", str(compiled / "stripped.cubin")], capture_output=True, text=True)
    (compiled / "stripped.ptx").unlink()
    (compiled / "stripped.cubin").unlink(missing_ok=True)
    assert result.returncode == 0, result.stderr


def test_compiling_interpreted_kernels_says_what_to_do():
    from seo_plugins.kernels import is_interpreted
    from seo_plugins.kernels.local_window import local_window_fwd

    if not is_interpreted(local_window_fwd):
        pytest.skip("kernels are compiled here, not interpreted")
    with pytest.raises(MissingDependencyError, match="TRITON_INTERPRET"):
        compile_kernel(SMALL, "sm_80")


def test_config_names_are_unique_identifiers():
    configs = default_configs()
    names = [c.name for c in configs]
    assert len(set(names)) == len(names)
    assert all(n.isidentifier() for n in names)
    assert {c.op for c in configs} == {"local_window", "landmark"}
    assert dataclasses.replace(SMALL, scale=0.3).name != SMALL.name
    assert dataclasses.replace(SMALL, scale=8 ** -0.5).name == SMALL.name, "the default scale is not spelled out"


@pytest.mark.parametrize("bad", [
    dict(op="dense"), dict(op="local_window", dtype="fp64"), dict(op="landmark", num_landmarks=0),
    dict(op="local_window", window_left=-1), dict(op="local_window", max_distance=4),
])
def test_bad_configs(bad):
    with pytest.raises(UsageError):
        KernelConfig(**bad)


def test_parse_arch():
    assert [parse_arch(a) for a in ("sm_80", "sm_90", "sm_90a", "86")] == [80, 90, 90, 86]
    for bad in ("sm_75", "ampere", ""):
        with pytest.raises(UsageError):
            parse_arch(bad)


def test_landmark_aot_refuses_more_landmarks_than_fit_48_kib():
    """The single AOT landmark kernel holds the L x L pseudo-inverse in one program: above 32
    landmarks it cannot fit TensorRT's 48 KiB, and the message points to the JIT path."""
    with pytest.raises(UsageError, match="aot=0"):
        KernelConfig("landmark", num_landmarks=64).kernel_and_constants()
    assert all(c.num_landmarks <= 32 for c in default_configs() if c.op == "landmark")
