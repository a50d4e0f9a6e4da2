"""validate end to end: passing sweeps, a deliberately broken file, the break search, bad input."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.torch import save_file

from seo_export.models.build import build_model
from seo_export.parity.cases import edge_lengths, make_cases
from seo_export.parity.validate import SWEEP_CONFIG
from tests.cli.helpers import assert_one_line_stderr, seo_export

TINY = {"hidden_size": 32, "num_layers": 3, "num_heads": 4, "vocab_size": 60, "intermediate_size": 64,
        "dropout_rate": 0.0, "attention_dropout": 0.0, "attention_window_size": 6, "attention_num_landmarks": 4,
        "positional_encoding_max_len": 64}


def test_edge_lengths_cover_the_listed_cases():
    lengths = edge_lengths(SWEEP_CONFIG, 256)
    w, landmarks = SWEEP_CONFIG.attention_window_size, SWEEP_CONFIG.attention_num_landmarks
    assert {1, w - 1, w, w + 1, landmarks - 1, 256} <= set(lengths.values())
    assert lengths["off-segment"] % landmarks != 0
    cases = make_cases(SWEEP_CONFIG, batch=3, max_len=256)
    assert all(c.feeds["attention_mask"][1:].sum() < c.feeds["attention_mask"][1:].size or c.seq == 1 for c in cases)


def test_learned_encoding_caps_the_longest_case():
    config = SWEEP_CONFIG.replace(positional_encoding_type="learned", positional_encoding_max_len=100)
    assert max(edge_lengths(config, 256).values()) == 100


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """Weights with no two tensors alike, so the exporter cannot share initializers between layers."""
    from seo_export import TransformerConfig

    directory = tmp_path_factory.mktemp("perturbed")
    config = TransformerConfig(**TINY, attention_type="local")
    model = build_model(config, seed=0)
    generator = torch.Generator().manual_seed(3)
    state = {k: (v + 0.05 * torch.randn(v.shape, generator=generator)) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    save_file(state, str(directory / "w.safetensors"))
    (directory / "c.json").write_text(json.dumps({**TINY, "attention_type": "local"}))
    for precision, name in (("fp32", "m.onnx"), ("fp16", "m16.onnx")):
        exported = seo_export("export", "--config", directory / "c.json", "--checkpoint", directory / "w.safetensors",
                              "--precision", precision, "-o", directory / name)
        assert exported.returncode == 0, exported.stderr
    return directory


def perturb_attention(source, target, layer: int) -> None:
    """Noise on the output projection of one layer's attention: the node producing its output value
    (not a constant shift, which the next LayerNorm would cancel)."""
    model = onnx.load_model(str(source))
    producer = next(n for n in model.graph.node if f"layers.{layer}.attention.output" in n.output)
    weights = {t.name: t for t in model.graph.initializer}
    name = next(i for i in producer.input if i in weights)
    values = numpy_helper.to_array(weights[name])
    noise = np.random.default_rng(0).normal(0, 0.5, values.shape).astype(values.dtype)
    weights[name].CopyFrom(numpy_helper.from_array(values + noise, name))
    onnx.save_model(model, str(target))


def test_validate_passes_an_honest_export_and_fails_a_perturbed_one(random_checkpoint, tmp_path):
    d = random_checkpoint
    common = ["--checkpoint", d / "w.safetensors", "--backends", "ort-fp32", "--max-len", 20]
    ok = seo_export("validate", "--model", d / "m.onnx", *common, "--report-dir", tmp_path / "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    perturb_attention(d / "m.onnx", tmp_path / "broken.onnx", layer=1)
    broken = seo_export("validate", "--model", tmp_path / "broken.onnx", *common, "--report-dir", tmp_path / "bad")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    report = json.loads((tmp_path / "bad" / "report.json").read_text())
    failed = [r for r in report["results"] if not r["verdict"]["passed"]]
    assert failed and all(r["break"] == {"module": "layers.1.attention", "layer": 1, "block": "attention",
                                         "fixed_by_fp32": None, "flag": None, "note": None} for r in failed)
    where = "layers.1.attention (layer 1, attention block)"
    assert where in (tmp_path / "bad" / "report.md").read_text()
    assert where in broken.stderr.replace("\n", " ")  # the terminal says where, not only the report


def test_a_file_is_judged_by_its_own_precision(random_checkpoint, tmp_path):
    d = random_checkpoint
    common = ["--checkpoint", d / "w.safetensors", "--max-len", 12, "--no-locate"]
    for name, backend in (("m16.onnx", "ort-fp16"), ("m.onnx", "ort-fp32")):
        result = seo_export("validate", "--model", d / name, *common, "--report-dir", tmp_path / name)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert {r["backend"] for r in report["results"]} == {backend}


@pytest.mark.parametrize("name,backend,precision", [("m16.onnx", "ort-fp32", "FP16"), ("m.onnx", "ort-fp16", "FP32")])
def test_a_backend_the_file_cannot_serve_is_refused(random_checkpoint, name, backend, precision):
    d = random_checkpoint
    result = seo_export("validate", "--model", d / name, "--checkpoint", d / "w.safetensors", "--backends", backend)
    assert result.returncode == 2
    assert_one_line_stderr(result.stderr, f"is an {precision} graph", f"{backend} runs")


def test_the_island_probe_is_not_run_on_a_file_its_weights_do_not_export_to(random_checkpoint, tmp_path):
    """A tampered FP16 file: re-exporting an island from the checkpoint would "fix" any defect of
    the file, so validate says why it did not try instead of claiming a cure."""
    d = random_checkpoint
    perturb_attention(d / "m16.onnx", tmp_path / "broken16.onnx", layer=0)
    broken = seo_export("validate", "--model", tmp_path / "broken16.onnx", "--checkpoint", d / "w.safetensors",
                        "--max-len", 12, "--report-dir", tmp_path / "bad")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    report = json.loads((tmp_path / "bad" / "report.json").read_text())
    breaks = [r["break"] for r in report["results"] if not r["verdict"]["passed"]]
    assert breaks and all(b["module"] == "layers.0.attention" and b["fixed_by_fp32"] is None for b in breaks)
    assert all("not what its recorded weights export to (1 weights" in b["note"] for b in breaks)


def test_checkpoint_provenance_is_enforced(random_checkpoint):
    d = random_checkpoint
    result = seo_export("validate", "--model", d / "m.onnx", "--backends", "ort-fp32")
    assert result.returncode == 2 and "pass the same file with --checkpoint" in result.stderr


def test_a_file_that_records_no_weights_is_refused_not_judged_against_guessed_ones(random_checkpoint, tmp_path):
    """validate used to compare such a file with seed-0 weights: a false FAIL that blamed the export (an INT8
    file built by hand read cosine ~0.5). Now one line says what to pass; given its checkpoint, it is judged."""
    d = random_checkpoint
    model = onnx.load_model(str(d / "m.onnx"))
    record = next(p for p in model.metadata_props if p.key == "seo_export.weights")
    assert "checkpoint_sha256" in record.value
    record.value = "{}"
    onnx.save_model(model, str(tmp_path / "bare.onnx"))
    common = ["--model", tmp_path / "bare.onnx", "--backends", "ort-fp32", "--max-len", 20]
    refused = seo_export("validate", *common)
    assert refused.returncode == 2
    assert_one_line_stderr(refused.stderr, "does not record where its weights came from: pass its weights with "
                                           "--checkpoint")
    judged = seo_export("validate", *common, "--checkpoint", d / "w.safetensors")
    assert judged.returncode == 0, judged.stdout + judged.stderr


@pytest.mark.parametrize("args,fragment", [
    (["--backends", "ort-int9"], "unknown backend ort-int9"),
    (["--model", "missing.onnx"], "does not exist"),
    (["--inputs", "nope.npz", "--attention", "local"], "does not exist"),
    (["--report-dir", "no/such/dir/r"], "does not exist"),
])
def test_bad_input_is_one_line(tmp_path, args, fragment):
    result = seo_export("validate", *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr


def test_inputs_of_the_wrong_shape_are_refused(tmp_path):
    np.savez(tmp_path / "in.npz", input_ids=np.zeros((2, 3, 4), dtype=np.int64))
    result = seo_export("validate", "--attention", "local", "--inputs", tmp_path / "in.npz")
    assert result.returncode == 2 and "input_ids must be a non-empty [batch, seq] integer array" in result.stderr


def test_model_that_does_not_match_the_config_is_refused(random_checkpoint, tmp_path):
    d = random_checkpoint
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY, "attention_type": "local", "hidden_size": 64}))
    result = seo_export("validate", "--model", d / "m.onnx", "--config", other)
    assert result.returncode == 2 and "does not match the given config" in result.stderr
    assert not list(tmp_path.glob("report*"))
