"""`seo-export plugins compile`: PTX for a small model's seo nodes with no GPU, and every error path."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

pytest.importorskip("triton")

from seo_export.cli import plugins as plugins_cli  # noqa: E402
from seo_export.errors import UsageError  # noqa: E402
from tests.cli.helpers import assert_one_line_stderr

HEADS, HEAD_DIM, K = 2, 8, 2
CONFIG = {"hidden_size": HEADS * HEAD_DIM, "num_heads": HEADS, "positional_encoding_type": "relative",
          "positional_encoding_max_relative_position": K}
LOCAL = dict(window_left=3, window_right=0, scale=HEAD_DIM ** -0.5)
LANDMARK = dict(num_landmarks=4, pinv_iterations=2, scale=HEAD_DIM ** -0.5)


def seo_model(path, nodes=(("LocalWindowAttention", LOCAL), ("LandmarkAttention", LANDMARK),
                           ("LocalWindowAttention", LOCAL)),
              elem=TensorProto.FLOAT16, declare_shapes=True, config=CONFIG, precision="fp16"):
    """A graph shaped like an export's attention core: seo nodes with five inputs and the plugin attributes."""
    dims = ["batch", HEADS, "seq", HEAD_DIM]
    qkv = [helper.make_tensor_value_info(n, elem, dims if declare_shapes else None) for n in ("q", "k", "v")]
    mask = helper.make_tensor_value_info("key_mask", TensorProto.BOOL, ["batch", "seq"])
    bias = helper.make_tensor("rel_bias", elem, [HEADS, 2 * K + 1], [0.0] * HEADS * (2 * K + 1))
    graph_nodes, outputs = [], []
    for index, (op, attrs) in enumerate(nodes):
        graph_nodes.append(helper.make_node(op, ["q", "k", "v", "key_mask", "rel_bias"], [f"out{index}"],
                                            name=f"layer{index}", domain="seo", plugin_namespace="seo",
                                            plugin_version="1", **attrs))
        outputs.append(helper.make_tensor_value_info(f"out{index}", elem, dims))
    graph = helper.make_graph(graph_nodes, "seo", [*qkv, mask], outputs, [bias] if declare_shapes else [])
    if not declare_shapes:
        graph.input.append(helper.make_tensor_value_info("rel_bias", elem, None))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("seo", 1)],
                              ir_version=9)
    props = {"seo_export.precision": precision}
    if config is not None:
        props["seo_export.config"] = json.dumps(config)
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


SEO_EXPORT = [sys.executable, "-m", "seo_export.cli.main"]
DEVICE_CHECK = Path(__file__).resolve().parents[2] / "scripts" / "device_check.sh"


def run_in_parallel(commands: dict) -> dict:
    """Each process spends seconds importing torch: running them side by side keeps the file fast."""
    started = {
        name: subprocess.Popen([*map(str, argv)], cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
        for name, (argv, cwd) in commands.items()
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=240)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """The command-line runs of this file, side by side: a compile, and a failing one (one line, no traceback)."""
    root = tmp_path_factory.mktemp("plugins_cli")
    folders = {name: root / name for name in ("ok", "bad_window")}
    for folder in folders.values():
        folder.mkdir()
    seo_model(folders["ok"] / "model.onnx")
    seo_model(folders["bad_window"] / "model.onnx", nodes=(("LocalWindowAttention", dict(LOCAL, window_left=-2)),))
    compile_args = [*SEO_EXPORT, "plugins", "compile", "--model", "model.onnx", "--arch", "sm_80", "--jobs", "1",
                    "-o", "out"]
    commands = {name: (compile_args, folder) for name, folder in folders.items()}
    commands["device_check_dry_run"] = (["bash", DEVICE_CHECK, root / "dry", "--dry-run"], root)
    if not torch.cuda.is_available():
        commands["device_check_no_gpu"] = (["bash", DEVICE_CHECK, root / "no_gpu"], root)
    return root, folders, run_in_parallel(commands)


def test_compiles_what_the_models_nodes_need(cli):
    from seo_plugins.aot import load_manifest
    from seo_plugins.launch import eval_shape_expr

    _, folders, results = cli
    result = results["ok"]
    assert result.returncode == 0, result.stderr
    assert "compiled 2 kernels (2 configurations x 1 archs: sm_80)" in result.stdout
    out = folders["ok"] / "out"
    manifest = load_manifest(out)  # checks every hash
    names = sorted(e["name"] for e in manifest["kernels"])
    assert names == ["landmark_fp16_d8_l4_i2_mask_bias2_sm80", "local_window_fp16_d8_w3_0_mask_bias2_sm80"], \
        "one kernel per configuration: the two identical local nodes share one"
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{n}.ptx" for n in names), "manifest.json"])
    assert sorted(p.name for p in folders["ok"].iterdir()) == ["model.onnx", "out"], "no staging folder left"
    for entry in manifest["kernels"]:
        assert entry["config"]["has_mask"] and entry["config"]["has_bias"] and entry["config"]["max_distance"] == K
        assert [a["name"] for a in entry["args"]][:8] == ["q", "k", "v", "key_padding_mask", "rel_bias",
                                                          "num_heads", "seq_len", "out"]
        grid = [eval_shape_expr(e, dict(B=2, H=HEADS, S=37)) for e in entry["grid"]["expr"]]
        assert grid[1 if entry["config"]["op"] == "local_window" else 0] == 2 * HEADS
    assert "compiled local_window_fp16_d8_w3_0_mask_bias2_sm80" in result.stderr, "progress goes to stderr"


def test_a_bad_node_is_one_line_and_writes_nothing(cli):
    _, folders, results = cli
    result = results["bad_window"]
    assert result.returncode == 2
    assert_one_line_stderr(result.stderr, "seo-export plugins: error:", "node 'layer0' (LocalWindowAttention)",
                          "window_left must be >= 0, got -2")
    assert sorted(p.name for p in folders["bad_window"].iterdir()) == ["model.onnx"]


@pytest.fixture
def in_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # set by the kernel tests when run together
    return tmp_path


@pytest.mark.parametrize("case,fragments", [
    ("not_onnx", ["is not an ONNX model"]),
    ("no_nodes", ["has no seo plugin nodes", "nothing to compile"]),
    ("bad_arch", ["sm_75"]),
    ("occupied", ["is not empty and holds no kernel manifest"]),
    ("missing", ["does not exist"]),
    ("output_is_a_file", ["exists and is not a folder"]),
])
def test_bad_input_is_one_line_and_writes_nothing(in_folder, capsys, case, fragments):
    """The same errors in-process (main() prints them as the command line does)."""
    from seo_export.cli.main import main

    if case == "not_onnx":
        (in_folder / "model.onnx").write_text("this is not a protobuf")
    elif case == "no_nodes":
        seo_model(in_folder / "model.onnx", nodes=())
    elif case != "missing":
        seo_model(in_folder / "model.onnx")
    if case == "occupied":
        (in_folder / "out").mkdir()
        (in_folder / "out" / "notes.txt").write_text("mine")
    if case == "output_is_a_file":
        (in_folder / "out").write_text("a file")
    before = sorted(p.name for p in in_folder.iterdir())
    arch = "sm_80,sm_75" if case == "bad_arch" else "sm_80"
    code = main(["plugins", "compile", "--model", "model.onnx", "--arch", arch, "-o", "out"])
    assert code == 2
    assert_one_line_stderr(capsys.readouterr().err, "seo-export plugins: error:", *fragments)
    assert sorted(p.name for p in in_folder.iterdir()) == before
    if case == "occupied":
        assert [p.name for p in (in_folder / "out").iterdir()] == ["notes.txt"]


def test_plugins_without_an_action_prints_usage(capsys):
    from seo_export.cli.main import main

    assert main(["plugins"]) == 2
    assert "compile" in capsys.readouterr().err


def test_default_configurations_without_a_model(tmp_path, monkeypatch):
    """No --model: the default configuration set, for the default archs (compiling stubbed out here)."""
    import seo_plugins.aot as aot

    seen = {}

    def fake_compile(configs, archs, *, out_dir, ptx_version, jobs, log, run_ptxas, allow_shared_opt_in):
        seen.update(configs=configs, archs=archs, ptx_version=ptx_version, run_ptxas=run_ptxas)
        resources = {"dynamic_shared_bytes": 0, "needs_shared_opt_in": False}
        (out_dir / "manifest.json").write_text(json.dumps({"ptxas": {"skipped": "--no-ptxas"}, "kernels": [
            {"ptx": "a.ptx", "sha256": "0" * 64, "shared_mem_bytes": 0, "resources": resources}]}))
        return out_dir / "manifest.json"

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # set by the kernel tests when run together
    monkeypatch.setattr(aot, "compile_kernels", fake_compile)
    monkeypatch.setattr(aot, "load_manifest", lambda folder: json.loads((folder / "manifest.json").read_text()))
    args = types.SimpleNamespace(plugins_command="compile", output=str(tmp_path / "a" / "b" / "out"),
                                 arch="sm_80, sm_90a", model=None, head_dim=None, jobs=None, ptx_version=80,
                                 quiet=True, no_ptxas=False, allow_shared_opt_in=False)
    assert plugins_cli.run(args) == 0
    assert seen["configs"] == aot.default_configs() and seen["archs"] == ["sm_80", "sm_90"]
    assert seen["run_ptxas"], "ptxas runs unless --no-ptxas"
    assert (tmp_path / "a" / "b" / "out" / "manifest.json").is_file()

    def failing(*args, **kwargs):
        raise RuntimeError("PassManager::run failed\nmore detail")

    monkeypatch.setattr(aot, "compile_kernels", failing)
    args.output = str(tmp_path / "new" / "deeper" / "out")
    with pytest.raises(UsageError, match="compiling the kernels failed: RuntimeError: PassManager::run failed$"):
        plugins_cli.run(args)
    assert not (tmp_path / "new").exists(), "a failed run leaves no folder behind"


def fake_compile_checked(shared: int, spilled: int = 0):
    """Stands in for aot.compile_checked (jobs=1 runs it in-process): kernels with the given shared
    memory and spills, to inject what the static checks exist to catch."""
    import hashlib

    from seo_plugins import aot, ptxas

    def compile_checked(config, arch, ptx_version, ptxas_path):
        ptx = f"// {config.name} for {arch}\n"
        name = f"{config.name}_{arch.replace('_', '')}"
        entry = {"name": name, "ptx": f"{name}.ptx", "sha256": hashlib.sha256(ptx.encode()).hexdigest(),
                 "arch": arch, "shared_mem_bytes": shared}
        found = ptxas.Resources(128, spilled, spilled, spilled, 0) if ptxas_path else None
        return aot.CompiledKernel(ptx=ptx, entry={**entry, "resources": ptxas.resources_entry(entry, found)})

    return compile_checked


@pytest.mark.parametrize("case,shared,spilled,flags,code,fragments", [
    ("over_48_kib", 49408, 0, [], 2, ["2 of 2 kernels fail the static checks", "(49408 B)", "node attribute aot=0",
                                      "--allow-shared-opt-in"]),
    ("spills", 1024, 16, [], 2, ["registers spilled to local memory", "(16 B stored, 16 B loaded)"]),
    ("over_the_arch", 200 * 1024, 0, ["--allow-shared-opt-in"], 2, ["more shared memory than the arch has",
                                                                     "sm_80 allows 166912 B"]),
    ("opt_in_allowed", 49408, 0, ["--allow-shared-opt-in"], 0, []),
    ("no_ptxas", 1024, 0, ["--no-ptxas"], 0, []),
])
def test_static_checks_decide_what_is_written(in_folder, monkeypatch, capsys, case, shared, spilled, flags, code,
                                              fragments):
    from seo_export.cli.main import main
    from seo_plugins import aot, ptxas

    monkeypatch.setattr(aot, "compile_checked", fake_compile_checked(shared, spilled))
    monkeypatch.setattr(ptxas, "find_ptxas", lambda: "/usr/bin/ptxas")
    monkeypatch.setattr(ptxas, "ptxas_version", lambda path: "13.0.88")
    seo_model(in_folder / "model.onnx")
    argv = ["plugins", "compile", "--model", "model.onnx", "--arch", "sm_80", "--jobs", "1", "-o", "out", "--quiet"]
    assert main([*argv, *flags]) == code
    out, err = capsys.readouterr()
    if code:
        assert_one_line_stderr(err, "seo-export plugins: error:", *fragments)
        assert sorted(p.name for p in in_folder.iterdir()) == ["model.onnx"], "nothing written"
        return
    manifest = json.loads((in_folder / "out" / "manifest.json").read_text())
    if case == "no_ptxas":
        assert "--no-ptxas" in manifest["ptxas"]["skipped"] and "ptxas skipped (--no-ptxas)" in out
        assert "registers" not in manifest["kernels"][0]["resources"]
    else:
        assert manifest["ptxas"] == {"path": "/usr/bin/ptxas", "version": "13.0.88"}
        assert all(e["resources"]["needs_shared_opt_in"] for e in manifest["kernels"])
        assert "needing the shared-memory opt-in above 48 KiB (not for TensorRT AOT): local_window_" in out


def test_a_missing_ptxas_is_one_line_before_compiling(in_folder, monkeypatch, capsys):
    import triton.backends.nvidia.compiler as nvidia

    from seo_export.cli.main import main
    from seo_plugins import aot, ptxas

    monkeypatch.setattr(ptxas.shutil, "which", lambda name: None)
    monkeypatch.setattr(nvidia, "get_ptxas", lambda *args: (_ for _ in ()).throw(RuntimeError("none bundled")))
    monkeypatch.setattr(aot, "compile_checked", lambda *args: pytest.fail("compiled without ptxas"))
    seo_model(in_folder / "model.onnx")
    assert main(["plugins", "compile", "--model", "model.onnx", "--arch", "sm_80", "-o", "out"]) == 3
    assert_one_line_stderr(capsys.readouterr().err, "ptxas (CUDA's assembler) is not on PATH", "--no-ptxas")
    assert sorted(p.name for p in in_folder.iterdir()) == ["model.onnx"]


def test_rerun_replaces_the_folder_as_a_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "old.ptx").write_text("old")
    staging = tmp_path / ".out.tmp"
    staging.mkdir()
    (staging / "manifest.json").write_text('{"kernels": []}')
    plugins_cli._replace_folder(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_model_configurations(tmp_path):
    """dtype, head dim and bias width from the graph, else from the metadata; conflicts and gaps refused."""
    configs = plugins_cli.model_kernel_configs(seo_model(tmp_path / "a.onnx", elem=TensorProto.FLOAT))
    assert sorted(c.name for c in configs) == ["landmark_fp32_d8_l4_i2_mask_bias2",
                                               "local_window_fp32_d8_w3_0_mask_bias2"]
    undeclared = seo_model(tmp_path / "b.onnx", declare_shapes=False, nodes=(("LocalWindowAttention", LOCAL),))
    (config,) = plugins_cli.model_kernel_configs(undeclared)
    assert (config.dtype, config.head_dim, config.max_distance) == ("fp16", HEAD_DIM, K), "from the metadata"
    (config,) = plugins_cli.model_kernel_configs(undeclared, head_dim_override=16)
    assert config.head_dim == 16
    bare = seo_model(tmp_path / "c.onnx", declare_shapes=False, config=None, precision="",
                     nodes=(("LocalWindowAttention", LOCAL),))
    with pytest.raises(UsageError, match="head dim is unknown.*--head-dim"):
        plugins_cli.model_kernel_configs(bare)
    with pytest.raises(UsageError, match="rel_bias width"):
        plugins_cli.model_kernel_configs(bare, head_dim_override=8)
    with pytest.raises(UsageError, match="contradicts"):
        plugins_cli.model_kernel_configs(seo_model(tmp_path / "d.onnx"), head_dim_override=16)
    with pytest.raises(UsageError, match="FP16 or FP32, got bf16"):
        plugins_cli.model_kernel_configs(seo_model(tmp_path / "e.onnx", elem=TensorProto.BFLOAT16))
    no_scale = dict(LOCAL)
    del no_scale["scale"]
    with pytest.raises(UsageError, match="missing attribute scale"):
        plugins_cli.model_kernel_configs(seo_model(tmp_path / "f.onnx", nodes=(("LocalWindowAttention", no_scale),)))


def test_the_cli_module_imports_nothing_heavy():
    # seo_plugins itself is always there (seo_export's errors live in it); its kernels, AOT build
    # and TensorRT plugins must not be.
    code = ("import sys, seo_export.cli.plugins; "
            "heavy = [m for m in ('triton', 'onnx', 'tensorrt', 'seo_plugins.aot', 'seo_plugins.kernels', "
            "'seo_plugins.trt') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_device_check_dry_run_exercises_the_harness_on_cpu(cli):
    """scripts/device_check.sh --dry-run: the correctness harness under Triton's interpreter at tiny
    sizes and a real AOT compile (not launched), results as JSON."""
    root, _, results = cli
    result = results["device_check_dry_run"]
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((root / "dry" / "device_check.json").read_text())
    assert data["status"] == "passed" and data["mode"] == "dry-run"
    cases = data["stages"]["triton"]["cases"]
    assert {c["dtype"] for c in cases} == {"fp16", "bf16"} and all(c["passed"] for c in cases)
    assert any(c.get("fully_padded_sample_is_zero") for c in cases)
    (kernel,) = data["stages"]["aot"]["kernels"]
    assert kernel["stripped_params_ok"] and kernel["target"] == "sm_80"
    assert [p["seq"] for p in data["stages"]["timing"]["plan"]] == [4096, 16384, 32768]
    assert (root / "dry" / "aot_manifest.json").is_file()
    assert "device_check (dry-run) on cpu: passed" in result.stdout
    # The timing stages run at tiny sizes: every contender timed, the goals judged (meaninglessly).
    stages = data["stages"]
    (local,) = stages["timing"]["sizes"]
    assert all("ms_median" in entry for entry in local["contenders"].values()) and len(local["contenders"]) == 5
    assert local["contenders"]["flex_sliding_window"]["max_abs_diff_vs_local"] < 1e-2
    (landmark,) = stages["landmark"]["sizes"]
    assert all("ms_median" in entry for entry in landmark["contenders"].values())
    assert landmark["contenders"]["gemm_square"]["kernel_time_ratio"] > 0
    model = stages["model"]
    assert model["passed"] and set(model["parity"]) == {"sdpa_dense", "local_triton", "landmark_triton"}
    assert [(s["batch"], s["seq"]) for s in model["sizes"]] == [(1, 16), (2, 16)]
    assert all(s["contenders"][name]["speedup_vs_sdpa"] > 0 for s in model["sizes"]
               for name in ("local_triton", "landmark_triton"))
    assert {g["goal"].split(" ")[0] for g in data["goals"]} == {"local", "landmark", "model"}
    assert "model parity landmark_triton: pass" in result.stdout and "goal NOT met at S=16 B=2" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_device_check_without_a_gpu_says_so(cli):
    root, _, results = cli
    result = results["device_check_no_gpu"]
    assert result.returncode == 2
    assert "this check needs the GPU machine; run with --dry-run" in result.stderr
    assert json.loads((root / "no_gpu" / "device_check.json").read_text())["status"] == "no_gpu"


def test_an_interpreted_triton_is_refused(in_folder, monkeypatch, capsys):
    from seo_export.cli.main import main

    seo_model(in_folder / "model.onnx")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert main(["plugins", "compile", "--model", "model.onnx", "-o", "out"]) == 2
    assert_one_line_stderr(capsys.readouterr().err, "TRITON_INTERPRET is set", "unset it")
    assert sorted(p.name for p in in_folder.iterdir()) == ["model.onnx"]
