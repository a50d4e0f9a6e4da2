"""The console script as users run it: exit codes and one-line errors, no tracebacks."""

import json
import subprocess
import sys

import pytest


def seo_export(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "seo_export.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_and_version():
    assert "export" in seo_export("--help").stdout or "info" in seo_export("--help").stdout
    result = seo_export("--version")
    assert result.returncode == 0 and result.stdout.startswith("seo-export ")


def test_info_json_reports_versions():
    result = seo_export("info", "--json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["packages"]["torch"] and info["packages"]["onnx"]
    assert info["cuda_available"] in (True, False)


def test_forward_smoke_runs():
    result = seo_export("forward", "--attention", "local", "--seq-len", "40", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert "last_hidden_state" in result.stdout


@pytest.mark.parametrize("content,fragment", [
    (None, "does not exist"),
    ("{oops", "not valid JSON"),
    ('{"hidden_size": 10, "num_heads": 3}', "must be divisible by num_heads"),
    ('{"attention": "local"}', "unknown config key 'attention'"),
])
def test_bad_config_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(seo_export("forward", "--config", str(path)), fragment)


def test_causal_sparse_is_refused_with_reason():
    assert_one_line_error(seo_export("forward", "--attention", "sparse", "--causal"), "not defined")


def test_bad_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert_one_line_error(seo_export("forward", "--checkpoint", str(bad)), "cannot read checkpoint")


def test_checkpoint_that_does_not_fit(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"pooler.weight": torch.zeros(3, 3)}, str(path))
    assert_one_line_error(seo_export("forward", "--checkpoint", str(path)), "does not fit the config")


def test_pickled_checkpoints_are_not_unpickled(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = tmp_path / "w.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    result = seo_export("forward", "--checkpoint", str(path))
    assert "unpickled!" not in result.stdout
    assert_one_line_error(result, "cannot read checkpoint")
